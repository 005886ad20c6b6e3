"""What every handler shares: the gateway, limits, and answers computed once per config
(at startup, and again when the config is reloaded)."""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from prismgate.config import Config, ModelEntry
from prismgate.gateway import Gateway
from prismgate.identity import Authenticator
from prismgate.identity.accounts import Accounts
from prismgate.identity.sealing import sealer_from_config
from prismgate.identity.virtual_keys import StoredVirtualKeys
from prismgate.media import HostAllowlist
from prismgate.observability.redaction import Redactor
from prismgate.providers import shown_settings
from prismgate.providers.base import Deployment
from prismgate.proxy.draining import Drain
from prismgate.proxy.openapi import openapi_document
from prismgate.proxy.schemas import (
    EndpointHealth,
    GroupInfo,
    GroupInfoList,
    ModelCard,
    ModelInfoEntry,
    ModelInfoList,
    ModelList,
)
from prismgate.routing.portkey_config import InlineConfigs, SavedConfigs
from prismgate.storage import KeyStore, SpendLog
from prismgate.ui.sessions import SessionSigner

__all__ = ["ProxyState"]

# litellm_params shown by /model/info: where a deployment points, never its secrets (and
# the settings providers declare as shown: regions, projects).
_SHOWN_PARAMS = (
    "model", "api_base", "api_version", "timeout", "rpm", "tpm", "weight",
    "custom_llm_provider", "drop_params",
)  # fmt: skip


class ProxyState:
    """Built once per worker from the config."""

    def __init__(self, config: Config, gateway: Gateway) -> None:
        self.config = config
        self.gateway = gateway
        master_key = config.general_settings.master_key
        self.authenticator = Authenticator(master_key, None)
        # Console sign-ins; none without a master key (nobody could sign in).
        self.sessions = SessionSigner(master_key) if master_key else None
        self.accounts: Accounts | None = None
        # Virtual keys stored over the API (with the key store), sealed with this key.
        self.sealer = sealer_from_config(config)
        self.virtual_keys: StoredVirtualKeys | None = None
        self.spend_log: SpendLog | None = gateway.stores.spend
        if gateway.stores.keys is not None:
            self.use_key_store(gateway.stores.keys)
        settings = config.general_settings
        self.drain = Drain(settings.server.shutdown_delay_seconds, settings.server.drain_seconds)
        self.max_body_bytes = int(settings.max_request_size_mb * 1024 * 1024)
        self.allow_client_provider_keys = settings.allow_client_provider_keys
        self.allowed_hosts = HostAllowlist(settings.media.allowed_hosts)
        self.inline_configs = InlineConfigs()
        self.openapi_body = openapi_document()
        # Each deployment's last `/health` result in this worker (by deployment id), with
        # when it was checked: the console shows it (`GET /model/status`).
        self.last_health: dict[str, tuple[float, EndpointHealth]] = {}
        self._serve(config, gateway)

    def reconfigured(self, config: Config, gateway: Gateway) -> ProxyState:
        """The state for a reloaded `config` served by `gateway` (`Gateway.reconfigured`):
        keys, sessions, the drain and health results carry over; what the config decides
        is made again. The app swaps it in whole, so a request sees one config."""
        new = copy.copy(self)
        new._serve(config, gateway)
        if self.authenticator.keys is not None:
            new.virtual_keys = gateway.use_stored_virtual_keys(self.authenticator.keys, new.sealer)
        return new

    def _serve(self, config: Config, gateway: Gateway) -> None:
        """What `config` decides: its gateway, saved Portkey configs (checked here, once),
        and the model listings, encoded once."""
        self.config = config
        self.gateway = gateway
        self.saved_configs = SavedConfigs(config.portkey_configs)
        redact = Redactor([entry.litellm_params.api_key for entry in config.model_list])
        groups = [(g, gateway.deployments.deployments_of(g)) for g in gateway.deployments.groups]
        encode = msgspec.json.encode
        # Aliases are models too (LiteLLM lists them), unless marked hidden.
        deployments = gateway.deployments
        aliases = [a for a in deployments.aliases if a not in deployments.hidden_aliases]
        names = [name for name, _ in groups] + [a for a in aliases if a not in deployments.groups]
        self.models_body = encode(ModelList(data=[ModelCard(id=name) for name in names]))
        # Each deployment with the id `/model/status` and the spend log give it
        # (`model_info.model_id`; `model_info.id` stays the config's own), so the console
        # matches the two by id, not by position.
        self.model_info_body = encode(
            ModelInfoList(
                data=[_model_info(entry, deployment, candidate.id, redact)
                      for name, pairs in groups
                      for (entry, deployment), candidate
                      in zip(pairs, deployments.candidates[name], strict=True)]
            )
        )  # fmt: skip
        self.group_info_body = encode(
            GroupInfoList(data=[_group_info(name, pairs) for name, pairs in groups])
        )
        self.groups = [name for name, _ in groups]

    def use_key_store(self, keys: KeyStore) -> None:
        """Authenticate generated keys from `keys`, serve the management API over it, and
        resolve the virtual keys stored in it. Keys changed through this worker stop
        working here at once, elsewhere within the authenticator's (and the virtual keys')
        staleness."""
        self.authenticator.keys = keys
        self.accounts = Accounts(keys, on_change=self.authenticator.forget)
        self.virtual_keys = self.gateway.use_stored_virtual_keys(keys, self.sealer)


def _model_info(
    entry: ModelEntry, deployment: Deployment, deployment_id: str, redact: Redactor
) -> ModelInfoEntry:
    params = entry.litellm_params
    shown: dict[str, Any] = {
        name: value for name in _SHOWN_PARAMS if (value := getattr(params, name)) is not None
    }
    shown_names = shown_settings(deployment.provider)
    shown |= {k: v for k, v in params.settings.items() if k in shown_names}
    if "api_base" in shown:
        shown["api_base"] = redact(str(shown["api_base"]))
    info = deployment.info.to_dict() if deployment.info else {}
    info["provider"] = deployment.provider
    info["model_id"] = deployment_id
    return ModelInfoEntry(model_name=entry.model_name, litellm_params=shown, model_info=info)


def _group_info(name: str, pairs: tuple[tuple[ModelEntry, Deployment], ...]) -> GroupInfo:
    infos = [deployment.info for _, deployment in pairs]
    first = next((info for info in infos if info is not None), None)
    image = first.image if first else None
    return GroupInfo(
        model_group=name,
        providers=sorted({deployment.provider for _, deployment in pairs}),
        mode=first.mode if first else None,
        max_input_tokens=first.max_input_tokens if first else None,
        max_output_tokens=first.max_output_tokens if first else None,
        input_cost_per_token=first.input_cost_per_token if first else None,
        output_cost_per_token=first.output_cost_per_token if first else None,
        # A group can do what every one of its deployments can do.
        supports_vision=all(bool(info and info.supports_vision) for info in infos),
        supports_function_calling=all(
            bool(info and info.supports_function_calling) for info in infos
        ),
        tpm=sum(entry.litellm_params.tpm or 0 for entry, _ in pairs) or None,
        rpm=sum(entry.litellm_params.rpm or 0 for entry, _ in pairs) or None,
        image_sizes=image.sizes if image else None,
        image_aspect_ratios=image.aspect_ratios if image else None,
        image_max_n=image.max_n if image else None,
        image_qualities=image.qualities if image else None,
        image_styles=image.styles if image else None,
        image_output_formats=image.output_formats if image else None,
        # The gateway delivers both, whatever the provider returns.
        image_response_formats=("url", "b64_json") if first and first.image else None,
    )
