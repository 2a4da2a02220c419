"""Model providers, and everything needed to write one.

One module per built-in provider (``kserve``, ``openai``, ``http``,
``azure_openai``, ``azureml``, ``bedrock``, ``sagemaker``, ``vertex`` /
``gemini``), all on one :class:`Endpoint`. A third-party provider imports
only from here::

    from faust_inference import ModelSettings, Predictions
    from faust_inference.providers import (
        Endpoint, ProviderOptions, TransportPool, parse_options, register_provider,
    )

    class EchoOptions(ProviderOptions):
        suffix: str = "!"

    class EchoProvider:
        max_batch_size = None

        def __init__(self, options: EchoOptions) -> None:
            self.options = options

        async def infer(self, inputs):
            return Predictions([f"{x}{self.options.suffix}" for x in inputs])

        async def aclose(self) -> None:
            pass

    def create(settings: ModelSettings, transports: TransportPool) -> EchoProvider:
        return EchoProvider(parse_options(settings, EchoOptions))

    register_provider("echo", create)     # or an entry point in the package's metadata

``docs/providers/writing-a-provider.md`` walks through it, with an HTTP
provider on :class:`Endpoint`.
"""

from faust_inference.core.provider import Predictions, Provider
from faust_inference.providers.auth import (
    RequestAuth,
    TokenAuth,
    TokenCache,
    api_key_header,
    basic_auth,
    require,
    resolve_api_key,
)
from faust_inference.providers.chat import ChatRequest, chat_request, describe, require_text
from faust_inference.providers.classify import (
    ErrorClassifier,
    error_json,
    header,
    kind_of,
    model_route_error,
    parse_retry_after,
    reclassify,
    status_error,
)
from faust_inference.providers.endpoint import JSON, Codec, Endpoint, JsonCodec, request_url
from faust_inference.providers.options import ProviderOptions, parse_answer, parse_options
from faust_inference.providers.pool import PoolEndpoint, replica_secrets, replica_wire
from faust_inference.providers.readiness import check_listed, check_ready, ready_on_any
from faust_inference.providers.redaction import (
    excerpt,
    redact_url,
    scrub,
    secrets_of,
    url_secrets,
)
from faust_inference.providers.registry import (
    ENTRY_POINT_GROUP,
    ProviderFactory,
    available_providers,
    create_provider,
    provider_factory,
    register_provider,
    unregister_provider,
)
from faust_inference.providers.structured import JsonMode, StructuredOutput, structured_output
from faust_inference.providers.transport import HttpTransport, Response, Transport, TransportPool

__all__ = [
    "ENTRY_POINT_GROUP",
    "JSON",
    "ChatRequest",
    "Codec",
    "Endpoint",
    "ErrorClassifier",
    "HttpTransport",
    "JsonCodec",
    "JsonMode",
    "PoolEndpoint",
    "Predictions",
    "Provider",
    "ProviderFactory",
    "ProviderOptions",
    "RequestAuth",
    "Response",
    "StructuredOutput",
    "TokenAuth",
    "TokenCache",
    "Transport",
    "TransportPool",
    "api_key_header",
    "available_providers",
    "basic_auth",
    "chat_request",
    "check_listed",
    "check_ready",
    "create_provider",
    "describe",
    "error_json",
    "excerpt",
    "header",
    "kind_of",
    "model_route_error",
    "parse_answer",
    "parse_options",
    "parse_retry_after",
    "provider_factory",
    "ready_on_any",
    "reclassify",
    "redact_url",
    "register_provider",
    "replica_secrets",
    "replica_wire",
    "request_url",
    "require",
    "require_text",
    "resolve_api_key",
    "scrub",
    "secrets_of",
    "status_error",
    "structured_output",
    "unregister_provider",
    "url_secrets",
]
