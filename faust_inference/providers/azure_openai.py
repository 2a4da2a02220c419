"""Azure OpenAI: chat completions and embeddings on a deployment, with a key or Entra ID.

The request and answer bodies are OpenAI's, so this provider is the
:mod:`.openai` provider with Azure's URL, ``api-version`` and authentication::

    app.inference.connections.add(
        name="azure-prod", provider="azure_openai",
        endpoint="https://contoso.openai.azure.com", api_version="2024-10-21",
        api_key_env="AZURE_OPENAI_API_KEY",
    )
    chat = app.model("summarize", connection="azure-prod", remote_name="gpt-4o-mini",
                     task="text_generation", system_prompt="One line.")
    embed = app.model("embed", connection="azure-prod", task="embedding",
                      remote_name="text-embedding-3-small", batch_size=64)

Wire format (Azure OpenAI REST reference, data plane):
``POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``
and ``.../embeddings?api-version=...``, with the OpenAI bodies minus
``model`` (the deployment names it) and the OpenAI answers, ``usage``
included. The key travels in the ``api-key`` header; an Entra ID token in
``Authorization: Bearer`` (scope ``https://cognitiveservices.azure.com/.default``);
see :mod:`.azure` for which is used. Errors carry ``retry-after-ms``, which
is honoured (:func:`.azure.azure_error`).

``output_type=`` works as with the openai provider (``response_format`` with a
JSON schema). There is no start-up readiness check (a deployment has no
model list to ask).

Options (besides the openai provider's ``system_prompt``, ``parameters``,
``dimensions``, ``json_mode``, ``strict_schema``):
    deployment: the deployment name (default ``remote_name``, then the model name).
    api_version: the ``api-version`` (default: the connection's, else ``2024-10-21``).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote, urlencode

from faust_inference.config import ModelSettings
from faust_inference.exceptions import ConfigurationError
from faust_inference.providers.auth.entra import COGNITIVE_SCOPE, azure_auth
from faust_inference.providers.classify import azure_error
from faust_inference.providers.endpoint import Endpoint
from faust_inference.providers.openai import OpenAIOptions, OpenAIProvider, check_task
from faust_inference.providers.options import parse_options
from faust_inference.providers.structured import structured_output
from faust_inference.providers.transport import TransportPool

__all__ = ["DEFAULT_API_VERSION", "AzureOpenAIOptions", "AzureOpenAIProvider", "create"]

DEFAULT_API_VERSION = "2024-10-21"
"""The latest GA data-plane ``api-version`` when this provider was written."""


class AzureOpenAIOptions(OpenAIOptions):
    """Options of the ``azure_openai`` provider."""

    deployment: str | None = None
    api_version: str | None = None


class AzureOpenAIProvider(OpenAIProvider):
    """The OpenAI provider, posting to a deployment without a ``model`` field."""

    pooled = False
    """One resource per model: each has its own key; regions fail over by ``fallback=``."""

    async def _post(self, body: dict[str, Any]) -> Any:
        body.pop("model", None)  # the deployment in the URL names the model
        return await self.endpoint.post(body)


def create(settings: ModelSettings, transports: TransportPool) -> AzureOpenAIProvider:
    """Build an Azure OpenAI provider from a model's settings."""
    options = parse_options(settings, AzureOpenAIOptions)
    check_task(settings)
    base = settings.endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT")
    if not base:
        raise ConfigurationError(
            f"model {settings.name!r} (azure_openai) needs the resource endpoint: "
            "endpoint=https://<resource>.openai.azure.com, on the model or its connection, "
            "or AZURE_OPENAI_ENDPOINT"
        )
    conn = settings.connection
    api_version = options.api_version or (conn.api_version if conn else None) or DEFAULT_API_VERSION
    deployment = options.deployment or settings.target
    path = "embeddings" if settings.task == "embedding" else "chat/completions"
    url = (
        f"{base.rstrip('/')}/openai/deployments/{quote(deployment, safe='')}/{path}"
        f"?{urlencode({'api-version': api_version})}"
    )
    auth = azure_auth(
        settings,
        scope=COGNITIVE_SCOPE,
        default_env="AZURE_OPENAI_API_KEY",
        key_header="api-key",
        key_scheme="",
        what="the azure_openai provider",
    )
    endpoint = Endpoint.for_model(
        settings,
        transports,
        url,
        headers=auth.headers,
        secrets=auth.secrets,
        auth=auth.token,
        classify=azure_error,
    )
    structured = structured_output(
        settings, supported=settings.task != "embedding", what="an embedding model"
    )
    return AzureOpenAIProvider(settings, options, endpoint, structured)
