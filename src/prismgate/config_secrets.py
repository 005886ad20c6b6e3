"""Every secret a config holds, for the redactor: nothing the gateway knows may reach a
log line, an error or an answer. The same reading of a deployment's settings finds the
secrets of a virtual key stored over the API, which the config does not hold."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from prismgate.config import Config
from prismgate.providers import provider_settings

__all__ = ["config_secrets", "setting_secrets"]

_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)


def config_secrets(config: Config) -> list[str]:
    """Every secret the config holds: the environment's, the master key, and each
    deployment's and virtual key's key and secret settings (as providers declare them)."""
    secret_settings = {name for name, s in provider_settings().items() if s.secret}
    found = [v for k, v in config.environ.items() if _SECRET_NAME.search(k)]
    found.append(config.general_settings.master_key or "")
    store = config.general_settings.image_store  # an S3 image store's credentials
    found += [store.secret_access_key or "", store.session_token or ""]
    sources: list[Mapping[str, Any]] = [
        {"api_key": e.litellm_params.api_key, **e.litellm_params.settings}
        for e in config.model_list
    ]
    sources += config.virtual_keys.values()
    for source in sources:
        found += setting_secrets(source, {"api_key", *secret_settings})
    return found


def setting_secrets(values: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    """The secrets among `values` (a deployment's key and settings) named by `names`, as
    an upstream could echo them: each whole (a JSON credential as JSON), and a
    service-account key's private key alone."""
    found: list[str] = []
    for name in names:
        value = values.get(name)
        if isinstance(value, Mapping):
            value = json.dumps(value)
        if isinstance(value, str) and value:
            found += [value, *_service_account_secrets(value)]
    return found


def _service_account_secrets(credentials: str) -> list[str]:
    """A JSON credential's private key on its own (it may be echoed alone)."""
    if not credentials.lstrip().startswith("{"):
        return []
    try:
        info = json.loads(credentials)
    except ValueError:
        return []
    key = info.get("private_key") if isinstance(info, dict) else None
    return [key, *key.splitlines()] if isinstance(key, str) else []
