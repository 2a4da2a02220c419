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
request fields that includes ``messages``. The key comes from ``api_key=`` or
the environment variable ``OPENAI_API_KEY`` (``api_key_env=`` names another);
it is required only for api.openai.com.

Options:
    system_prompt: prepended as a system message to string inputs.
    parameters: extra request fields (``temperature``, ``max_tokens`` ...).
    dimensions: embedding size, for models that can shorten theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from faust_inference.config import ModelSettings
from faust_inference.core.provider import Predictions
from faust_inference.exceptions import ConfigurationError, InvalidInput, ResponseDecodeError
from faust_inference.providers.base import (
    JsonEndpoint,
    ProviderOptions,
    describe,
    json_endpoint,
    parse_options,
)
from faust_inference.providers.transport import TransportPool
from faust_inference.results import Usage

__all__ = ["OpenAIOptions", "OpenAIProvider", "check_task", "create"]

DEFAULT_ENDPOINT = "https://api.openai.com/v1"


class OpenAIOptions(ProviderOptions):
    """Options of the ``openai`` provider."""

    system_prompt: str | None = None
    parameters: dict[str, Any] = {}
    dimensions: int | None = None


class OpenAIProvider:
    """Chat completions (one input per call) or embeddings (batched)."""

    def __init__(
        self, settings: ModelSettings, options: OpenAIOptions, endpoint: JsonEndpoint
    ) -> None:
        self.embedding = settings.task == "embedding"
        self.max_batch_size: int | None = None if self.embedding else 1
        self.model = settings.target
        self.options = options
        self.endpoint = endpoint
        self.url = endpoint.url

    async def infer(self, inputs: Sequence[Any]) -> Predictions:
        """Embed a batch, or complete one chat."""
        if self.embedding:
            return await self._embed(inputs)
        return await self._chat(inputs[0])

    async def aclose(self) -> None:
        """The transport is shared and closed by its pool."""

    async def _embed(self, inputs: Sequence[Any]) -> Predictions:
        for value in inputs:
            if not isinstance(value, str) or not value:
                raise InvalidInput(
                    "input", f"an embedding input must be a non-empty string, got {describe(value)}"
                )
        body: dict[str, Any] = {
            "model": self.model,
            "input": list(inputs),
            **self.options.parameters,
        }
        if self.options.dimensions:
            body["dimensions"] = self.options.dimensions
        answer = await self._post(body)
        try:
            items = sorted(answer["data"], key=lambda d: d["index"])
            vectors = [item["embedding"] for item in items]
        except (KeyError, TypeError) as exc:
            raise ResponseDecodeError(
                f"{self.url}: unexpected embeddings answer ({exc!r})"
            ) from None
        return Predictions(vectors, usage=_usage(answer))

    async def _chat(self, value: Any) -> Predictions:
        body: dict[str, Any] = {"model": self.model, **self.options.parameters}
        if isinstance(value, str):
            messages = [{"role": "user", "content": value}]
            if self.options.system_prompt:
                messages.insert(0, {"role": "system", "content": self.options.system_prompt})
            body["messages"] = messages
        elif isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
            body["messages"] = value
        elif isinstance(value, dict) and isinstance(value.get("messages"), list):
            body.update(value)
        else:
            raise InvalidInput(
                "input",
                "a chat input must be a string, a list of {'role', 'content'} messages, "
                f"or a dict with 'messages'; got {describe(value)}",
            )
        answer = await self._post(body)
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ResponseDecodeError(f"{self.url}: unexpected chat answer ({exc!r})") from None
        return Predictions([content], usage=_usage(answer))

    async def _post(self, body: dict[str, Any]) -> Any:
        return await self.endpoint.post(body)


def create(settings: ModelSettings, transports: TransportPool) -> OpenAIProvider:
    """Build an OpenAI-compatible provider from a model's settings."""
    options = parse_options(settings, OpenAIOptions)
    check_task(settings)
    endpoint = settings.endpoint or DEFAULT_ENDPOINT
    hosted = (urlsplit(endpoint).hostname or "").endswith("openai.com")
    path = "/embeddings" if settings.task == "embedding" else "/chat/completions"
    target = json_endpoint(
        settings, transports, endpoint + path, default_env="OPENAI_API_KEY", required=hosted
    )
    return OpenAIProvider(settings, options, target)


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
