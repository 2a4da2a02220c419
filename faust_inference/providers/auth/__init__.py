"""How requests prove who sends them: API keys, Basic credentials, bearer tokens, SigV4.

An :class:`~faust_inference.providers.Endpoint` takes static credential
headers (API keys, ``Basic``) as plain headers, and an optional
:class:`RequestAuth` for credentials computed per request (tokens that
expire, signatures over the body). Cloud SDKs are optional extras, imported
only when a model needs them (:func:`require`).

Modules, named for what they hold:

- :mod:`.keys`: API keys from settings or the environment, ``Basic`` from a URL;
- :mod:`.tokens`: bearer tokens fetched in a thread and cached (:class:`TokenCache`);
- :mod:`.sigv4`: AWS SigV4 with botocore's credential chain;
- :mod:`.entra`: Azure keys or Entra ID tokens;
- :mod:`.google`: google-auth credentials and tokens.
"""

from faust_inference.providers.auth.keys import api_key_header, basic_auth, resolve_api_key
from faust_inference.providers.auth.sdk import require
from faust_inference.providers.auth.tokens import RequestAuth, TokenAuth, TokenCache

__all__ = [
    "RequestAuth",
    "TokenAuth",
    "TokenCache",
    "api_key_header",
    "basic_auth",
    "require",
    "resolve_api_key",
]
