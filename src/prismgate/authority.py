"""Who may set what: the one caller-authority rule (DESIGN.md §7).

A caller may set request parameters. What decides where a call goes and as whom is the
operator's alone: an endpoint, a credential, a region or project, a credential file, the
transport, a timeout past the operator's. Those are the deployment fields of
`litellm_params`, LiteLLM's transport settings that prismgate does not act on
(`config_keys.litellm_transport()`: retries, headers, and the credential routes each
provider declares it does not support), and every setting a provider declares
(`Provider.settings`, under LiteLLM's names and Portkey's), so a setting is covered the
day a provider declares it; there is no second list of prismgate's settings to keep.

The operator speaks through the config: `model_list`, `virtual_keys` and saved
`portkey_configs`. Everything else is a caller, and passes `CallerAuthority.check`:

- a proxy request's body fields beyond the OpenAI ones (and a literal `extra_body`);
- a caller's own Portkey config (`override_params`, on every target);
- SDK keywords and keys on a model group the config defines (an SDK call that names a
  `provider/model` itself describes its own deployment, and may configure it);
- the gateway once more, where parameters become a provider call.

Names are compared folded (case, `_` and `-` ignored), so `awsRegionName` and
`AWS-REGION-NAME` are the setting they spell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prismgate.config import LiteLLMParams
from prismgate.config_keys import litellm_transport
from prismgate.errors import BadRequestError
from prismgate.providers import provider_settings

__all__ = ["CallerAuthority"]

# `litellm_params` a caller may also set per request: they change what is asked, not
# where it goes or as whom.
_REQUEST_LEVEL = frozenset({"model", "drop_params", "provider_params", "settings"})


class CallerAuthority:
    """The names only the operator may set, and the check every entry point applies."""

    def __init__(self, operator_names: Iterable[str]) -> None:
        self.operator_names = frozenset(operator_names)
        self._folded = frozenset(_fold(name) for name in self.operator_names)

    @classmethod
    def from_providers(cls) -> CallerAuthority:
        """The rule for the deployment fields and every provider's declared settings."""
        declared = provider_settings()
        names = set(LiteLLMParams.__struct_fields__) - _REQUEST_LEVEL
        names |= litellm_transport()
        names |= set(declared)
        names |= {setting.portkey for setting in declared.values() if setting.portkey}
        return cls(names)

    def is_operators(self, name: str) -> bool:
        """Whether `name` (however spelled) configures a deployment."""
        return _fold(name) in self._folded

    def check(self, params: Mapping[str, Any], *, where: str) -> None:
        """A 400 naming the first of `params` that only the operator may set. `where` says
        where the caller put it (`the request body`, `x-portkey-config: config.targets[0]
        .override_params`), so the message tells them what to change."""
        for name, value in params.items():
            if name == "extra_body" and isinstance(value, Mapping):
                self.check(value, where=f"{where} (extra_body)")
            elif self.is_operators(name):
                raise BadRequestError(
                    f"{name!r} in {where} configures how the gateway reaches a provider "
                    "(an endpoint, credential, region, file, timeout or transport), which "
                    "only the gateway's config may set; remove it",
                    param=name[:64],
                    code="setting_not_allowed",
                )


def _fold(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")
