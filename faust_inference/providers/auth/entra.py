"""Azure keys or Entra ID tokens, for the azure_openai and azureml providers.

A model authenticates with, in this order:

1. an API key given to the model or its connection (``api_key=``);
2. an Entra ID token from the connection's ``credentials`` (any
   azure-identity ``TokenCredential``) or its ``azure_tenant_id`` /
   ``azure_client_id`` / ``azure_client_secret`` (a service principal);
3. an API key from the environment (``api_key_env=`` or the provider's
   default variable);
4. an Entra ID token from ``DefaultAzureCredential`` (managed identity,
   workload identity, Azure CLI ...).

Tokens are fetched with azure-identity's blocking ``get_token`` in a thread
and reused until five minutes before they expire (:class:`.TokenCache`).
"""

from __future__ import annotations

from faust_inference.config import ModelSettings
from faust_inference.exceptions import ConfigurationError
from faust_inference.providers.auth.keys import api_key_header, resolve_api_key
from faust_inference.providers.auth.sdk import require
from faust_inference.providers.auth.tokens import TokenAuth, TokenCache

__all__ = ["COGNITIVE_SCOPE", "ML_SCOPE", "AzureAuth", "azure_auth"]

COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"
"""Entra ID scope of Azure OpenAI (Azure AI services)."""
ML_SCOPE = "https://ml.azure.com/.default"
"""Entra ID scope of Azure Machine Learning online endpoints (``aad_token`` mode)."""


class AzureAuth:
    """Either a static API-key header or a :class:`TokenAuth`; see :func:`azure_auth`.

    Attributes:
        headers: the static key header (empty with a token).
        secrets: the key, to scrub.
        token: the Entra ID token auth (None with a key).
    """

    __slots__ = ("headers", "secrets", "token")

    def __init__(
        self, headers: dict[str, str], secrets: tuple[str, ...], token: TokenAuth | None
    ) -> None:
        self.headers = headers
        self.secrets = secrets
        self.token = token


def azure_auth(
    settings: ModelSettings,
    *,
    scope: str,
    default_env: str,
    key_header: str,
    key_scheme: str,
    what: str,
) -> AzureAuth:
    """How a model authenticates (see the module docstring for the order).

    Raises:
        ConfigurationError: a service principal without tenant or client id,
            or azure-identity missing when a token is needed.
    """
    conn = settings.connection
    if settings.api_key is not None:
        return _key(settings.api_key.get_secret_value(), key_header, key_scheme)
    if conn is not None and (conn.credentials is not None or conn.azure_client_secret is not None):
        return AzureAuth({}, (), TokenAuth(TokenCache(_token_fetcher(settings, scope, what))))
    key = resolve_api_key(settings, default_env=default_env, required=False)
    if key:
        return _key(key, key_header, key_scheme)
    return AzureAuth({}, (), TokenAuth(TokenCache(_token_fetcher(settings, scope, what))))


def _key(key: str, header: str, scheme: str) -> AzureAuth:
    return AzureAuth(api_key_header(key, header=header, scheme=scheme), (key,), None)


def _token_fetcher(settings: ModelSettings, scope: str, what: str) -> _Fetch:
    conn = settings.connection
    credential = conn.credentials if conn is not None else None
    if credential is None:
        identity = require("azure.identity", "azure", f"{what} with an Entra ID token")
        if conn is not None and conn.azure_client_secret is not None:
            if not (conn.azure_tenant_id and conn.azure_client_id):
                raise ConfigurationError(
                    f"connection {conn.name!r}: azure_client_secret needs azure_tenant_id "
                    "and azure_client_id"
                )
            credential = identity.ClientSecretCredential(
                conn.azure_tenant_id,
                conn.azure_client_id,
                conn.azure_client_secret.get_secret_value(),
            )
        else:
            credential = identity.DefaultAzureCredential()
    return _Fetch(credential, scope)


class _Fetch:
    """``credential.get_token(scope)`` as ``(token, expires_on)``; blocking, run in a thread."""

    __slots__ = ("credential", "scope")

    def __init__(self, credential: object, scope: str) -> None:
        self.credential = credential
        self.scope = scope

    def __call__(self) -> tuple[str, float]:
        token = self.credential.get_token(self.scope)  # type: ignore[attr-defined]
        return str(token.token), float(token.expires_on)
