"""Who is calling: principals, the authenticator, and gateway keys."""

from prismgate.identity.authenticate import Authenticator
from prismgate.identity.keys import key_name, new_key, token_of
from prismgate.identity.principal import SDK_CALLER, Principal

__all__ = ["SDK_CALLER", "Authenticator", "Principal", "key_name", "new_key", "token_of"]
