"""OpenAI-compatible APIs: OpenAI, vLLM, infinity, llama.cpp server, LiteLLM, ...

``task="embedding"`` calls ``POST {endpoint}/embeddings`` with a batch of
strings per request; any other task calls ``POST {endpoint}/chat/completions``,
one event per request, and the output is the reply text::

    embed = app.model(
        "minilm", provider="openai", endpoint="http://127.0.0.1:7997/v1",
        remote_name="all-MiniLM-L6-v2", task="embedding", batch_size=32,
    )
    await embed.predict("a sentence")      # -> [0.01, -0.04, ...]

    chat = app.model(
        "summarize", provider="openai", remote_name="gpt-4o-mini",
        task="text_generation", system_prompt="Summarize in one line.",
    )

A chat input is a string (the user message), a list of messages, or a dict of
request fields that includes ``messages`` (:mod:`.chat`). The key comes from
``api_key=`` or the environment variable ``OPENAI_API_KEY`` (``api_key_env=``
names another); it is required only for api.openai.com.

With ``output_type=SomePydanticModel`` a chat model asks for JSON in that
model's schema (``response_format``) and its output is the validated
object; see :mod:`.structured` and ``docs/providers/openai.md``.

Options:
    system_prompt: a system message put before the input's own messages.
    parameters: extra request fields (``temperature``, ``max_tokens`` ...).
    dimensions: embedding size, for models that can shorten theirs.
    json_mode: with ``output_type``: ``json_schema`` (default; OpenAI, vLLM,
        most servers) or ``json_object`` (llama.cpp's server: ``{"type":
        "json_object", "schema": ...}``).
    strict_schema: with ``json_mode="json_schema"``: OpenAI's strict mode
        (default true; objects closed, every field required).
    check_ready: ask ``GET {endpoint}/models`` at start-up (default true;
        turn off for servers without that route).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from faust_inference.config import ModelSettings
from faust_inference.core.provider import Predictions
from faust_inference.exceptions import ConfigurationError
from faust_inference.providers.auth.keys import resolve_api_key
from faust_inference.providers.chat import chat_request, require_text
from faust_inference.providers.classify import model_route_error
from faust_inference.providers.endpoint import Endpoint
from faust_inference.providers.options import ProviderOptions, parse_options
from faust_inference.providers.pool import PoolEndpoint, replica_secrets, replica_wire
from faust_inference.providers.readiness import check_listed, ready_on_any
from faust_inference.providers.structured import JsonMode, StructuredOutput, structured_output
from faust_inference.providers.transport import TransportPool
from faust_inference.results import Usage

__all__ = ["OpenAIOptions", "OpenAIProvider", "check_task", "create"]

DEFAULT_ENDPOINT = "https://api.openai.com/v1"


class OpenAIOptions(ProviderOptions):
    """Options of the ``openai`` provider."""

    system_prompt: str | None = None
    parameters: dict[str, Any] = {}
    dimensions: int | None = None
    json_mode: JsonMode = "json_schema"
    strict_schema: bool = True
    check_ready: bool = True


class OpenAIProvider:
    """Chat completions (one input per call) or embeddings (batched).

    ``models_url`` is the ``/models`` route the start-up check reads (None:
    no check); ``replicas`` pairs every replica's endpoint with its own, when
    the model was given several URLs (``endpoint=[...]``).
    """

    pooled = True
    """Balances ``endpoint=[...]`` replicas (vLLM servers ...) and hedges."""

    def __init__(
        self,
        settings: ModelSettings,
        options: OpenAIOptions,
        endpoint: Endpoint,
        structured: StructuredOutput | None = None,
        models_url: str | None = None,
        *,
        replicas: Sequence[tuple[Endpoint, str | None]] = (),
    ) -> None:
        self.embedding = settings.task == "embedding"
        self.max_batch_size: int | None = None if self.embedding else 1
        self.batching = self.embedding  # batch_size="auto" batches embeddings
        self.model = settings.target
        self.options = options
        self.endpoint = endpoint
        self.url = endpoint.url
        self.structured = structured
        self.models_url = models_url
        self._replicas = list(replicas) or [(endpoint, models_url)]
        self.wire: PoolEndpoint = replica_wire(settings, [e for e, _ in self._replicas])
        """What requests go through: the endpoint, or a pool of the replicas."""

    async def infer(self, inputs: Sequence[Any]) -> Predictions:
        """Embed a batch, or complete one chat."""
        if self.embedding:
            return await self._embed(inputs)
        return await self._chat(inputs[0])

    async def ready(self) -> None:
        """Check that ``GET {endpoint}/models`` lists the model (when it lists any).

        Raises:
            ModelNotFound: the route or the model is missing; names the URL.
            EndpointNotReady: the server answers 5xx or 429.
            TransportError: the server is not reachable.
        """
        if not self.options.check_ready:
            return
        fixes = (
            "endpoint= must be the API base that /chat/completions and /embeddings "
            "hang from (most servers: http://host:port/v1), and remote_name= a model "
            "the server serves (check_ready=False skips this check)"
        )
        await ready_on_any(
            check_listed(endpoint, url, model=self.model, fixes=fixes)
            for endpoint, url in self._replicas
            if url is not None
        )

    def secrets(self) -> tuple[str, ...]:
        """The credentials this provider sends, to every replica (to scrub from messages)."""
        return replica_secrets(e for e, _ in self._replicas)

    async def aclose(self) -> None:
        """The transport is shared and closed by its pool."""

    async def _embed(self, inputs: Sequence[Any]) -> Predictions:
        texts = [require_text(value) for value in inputs]
        body: dict[str, Any] = {"model": self.model, "input": texts, **self.options.parameters}
        if self.options.dimensions:
            body["dimensions"] = self.options.dimensions
        answer = await self._post(body)
        try:
            items = sorted(answer["data"], key=lambda d: d["index"])
            vectors = [item["embedding"] for item in items]
        except (KeyError, TypeError) as exc:
            raise self.endpoint.bad_answer(
                f"unexpected embeddings answer ({exc!r})", answer
            ) from None
        return Predictions(vectors, usage=_usage(answer))

    async def _chat(self, value: Any) -> Predictions:
        request = chat_request(value, system_prompt=self.options.system_prompt)
        body: dict[str, Any] = {
            "model": self.model,
            **self.options.parameters,
            **request.extra,
            "messages": request.openai_messages(),
        }
        if self.structured is not None:
            body["response_format"] = self.structured.openai_response_format(
                self.options.json_mode, strict=self.options.strict_schema
            )
        answer = await self._post(body)
        try:
            message = answer["choices"][0]["message"]
            content = message["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise self.endpoint.bad_answer(f"unexpected chat answer ({exc!r})", answer) from None
        output: Any = content
        if self.structured is not None:
            if content is None and message.get("refusal"):
                content = f"(refused: {message['refusal']})"
            output = self.structured.validate_text(content, self.url, self.secrets())
        return Predictions([output], usage=_usage(answer))

    async def _post(self, body: dict[str, Any]) -> Any:
        return await self.wire.post(body)


def create(settings: ModelSettings, transports: TransportPool) -> OpenAIProvider:
    """Build an OpenAI-compatible provider from a model's settings."""
    options = parse_options(settings, OpenAIOptions)
    check_task(settings)
    structured = structured_output(
        settings, supported=settings.task != "embedding", what="an embedding model"
    )
    bases = settings.replica_urls or (DEFAULT_ENDPOINT,)
    hosted = any((urlsplit(base).hostname or "").endswith("openai.com") for base in bases)
    path = "/embeddings" if settings.task == "embedding" else "/chat/completions"
    key = resolve_api_key(settings, default_env="OPENAI_API_KEY", required=hosted)
    replicas = []
    for base in bases:
        endpoint = Endpoint.for_model(
            settings, transports, base + path, key=key, classify=model_route_error
        )
        replicas.append((endpoint, endpoint.url.removesuffix(path) + "/models"))
    first, models_url = replicas[0]
    return OpenAIProvider(settings, options, first, structured, models_url, replicas=replicas)


def check_task(settings: ModelSettings) -> None:
    """Reject tasks the chat and embeddings APIs cannot serve (shared with azure_openai).

    Raises:
        ConfigurationError: ``task="regression"``.
    """
    if settings.task == "regression":
        raise ConfigurationError(
            f"model {settings.name!r}: the {settings.provider} provider serves "
            "task='embedding', 'text_generation' or 'classification' (chat), not 'regression'"
        )


def _usage(answer: Any) -> Usage | None:
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return None
    return Usage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
    )
