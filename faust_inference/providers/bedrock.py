"""Amazon Bedrock: ``Converse`` for chat, ``InvokeModel`` for embeddings and native bodies.

Requests are signed with SigV4 by botocore (:mod:`.aws`); the region and the
credentials come from the model's connection or from botocore's chain::

    app.inference.connections.add(name="bedrock-us", provider="bedrock", region="us-east-1")
    chat = app.model("claude", connection="bedrock-us", task="text_generation",
                     remote_name="anthropic.claude-3-haiku-20240307-v1:0",
                     system_prompt="Answer in one line.", parameters={"maxTokens": 200})
    embed = app.model("titan", connection="bedrock-us", task="embedding",
                      remote_name="amazon.titan-embed-text-v2:0")

Wire format (Bedrock Runtime API reference; botocore ``bedrock-runtime`` model):

- ``POST /model/{modelId}/converse`` with ``{"messages": [{"role": "user",
  "content": [{"text": ...}]}], "system": [{"text": ...}], "inferenceConfig":
  {...}}``; the answer is ``{"output": {"message": {"role": "assistant",
  "content": [{"text": ...}]}}, "stopReason": ..., "usage": {"inputTokens",
  "outputTokens", "totalTokens"}}``. The output is the reply text.
- ``POST /model/{modelId}/invoke`` with the model's native JSON body; token
  counts come back in ``X-Amzn-Bedrock-Input-Token-Count`` and
  ``X-Amzn-Bedrock-Output-Token-Count``. Titan embeddings take
  ``{"inputText": ...}`` (one text per call) and answer ``{"embedding": [...]}``;
  Cohere embeddings take ``{"texts": [...], "input_type": ...}`` (batched) and
  answer ``{"embeddings": [[...], ...]}``. Other models (``api="invoke"``):
  each input is the native body, and the output the decoded answer.

The host is ``https://bedrock-runtime.{region}.amazonaws.com``; ``endpoint=``
replaces it (VPC endpoints, gateways, local test servers).

Options:
    region: AWS region (else the connection's, else botocore's configuration).
    api: ``converse`` (default for chat) or ``invoke``.
    system_prompt: a system prompt for string inputs (converse).
    parameters: ``inferenceConfig`` fields (converse) or extra body fields (invoke).
    additional_fields: ``additionalModelRequestFields`` (converse).
    embedding_format: ``titan`` or ``cohere``; guessed from the model id.
    input_type: Cohere's ``input_type`` (default ``search_document``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

from faust_inference.config import ModelSettings
from faust_inference.core.provider import Predictions
from faust_inference.exceptions import ConfigurationError, InvalidInput, ResponseDecodeError
from faust_inference.providers.aws import aws_error, aws_signer
from faust_inference.providers.base import ProviderOptions, describe, parse_options
from faust_inference.providers.cloud import CloudEndpoint, json_body, request_url
from faust_inference.providers.transport import TransportPool
from faust_inference.results import Usage

__all__ = ["BedrockOptions", "BedrockProvider", "create"]

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class BedrockOptions(ProviderOptions):
    """Options of the ``bedrock`` provider."""

    region: str | None = None
    api: Literal["converse", "invoke"] | None = None
    system_prompt: str | None = None
    parameters: dict[str, Any] = {}
    additional_fields: dict[str, Any] | None = None
    embedding_format: Literal["titan", "cohere"] | None = None
    input_type: str = "search_document"


class BedrockProvider:
    """One Converse or InvokeModel call per request."""

    def __init__(
        self,
        options: BedrockOptions,
        endpoint: CloudEndpoint,
        mode: Literal["converse", "invoke", "titan", "cohere"],
    ) -> None:
        self.options = options
        self.endpoint = endpoint
        self.url = endpoint.url
        self.mode = mode
        self.max_batch_size: int | None = None if mode == "cohere" else 1

    async def infer(self, inputs: Sequence[Any]) -> Predictions:
        """Converse, embed or invoke."""
        if self.mode == "converse":
            return await self._converse(inputs[0])
        if self.mode == "cohere":
            texts = [_text(v) for v in inputs]
            body: dict[str, Any] = {
                "texts": texts,
                "input_type": self.options.input_type,
                **self.options.parameters,
            }
            answer, usage = await self._invoke(body)
            vectors = _get(answer, self.url, "embeddings")
            if not isinstance(vectors, list) or len(vectors) != len(texts):
                raise ResponseDecodeError(f"{self.url}: expected {len(texts)} embeddings")
            return Predictions(vectors, usage=usage)
        if self.mode == "titan":
            answer, usage = await self._invoke(
                {"inputText": _text(inputs[0]), **self.options.parameters}
            )
            return Predictions([_get(answer, self.url, "embedding")], usage=usage)
        value = inputs[0]
        if not isinstance(value, Mapping):
            raise InvalidInput(
                "input",
                f"an InvokeModel input is the model's JSON body (a dict), got {describe(value)}",
            )
        answer, usage = await self._invoke({**value, **self.options.parameters})
        return Predictions([answer], usage=usage)

    async def aclose(self) -> None:
        """The transport is shared and closed by its pool."""

    async def _converse(self, value: Any) -> Predictions:
        body: dict[str, Any] = {}
        if isinstance(value, str):
            body["messages"] = [{"role": "user", "content": [{"text": value}]}]
            if self.options.system_prompt:
                body["system"] = [{"text": self.options.system_prompt}]
        elif isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
            body["messages"] = [_message(m) for m in value]
        elif isinstance(value, dict) and isinstance(value.get("messages"), list):
            body.update(value)
            body["messages"] = [_message(m) for m in value["messages"]]
        else:
            raise InvalidInput(
                "input",
                "a Converse input must be a string, a list of messages or a dict with "
                f"'messages'; got {describe(value)}",
            )
        if self.options.parameters:
            body["inferenceConfig"] = {**self.options.parameters, **body.get("inferenceConfig", {})}
        if self.options.additional_fields:
            body.setdefault("additionalModelRequestFields", self.options.additional_fields)
        answer = await self.endpoint.post(body)
        try:
            blocks = answer["output"]["message"]["content"]
            text = "".join(b["text"] for b in blocks if "text" in b)
        except (KeyError, TypeError) as exc:
            raise ResponseDecodeError(f"{self.url}: unexpected Converse answer ({exc!r})") from None
        usage = answer.get("usage") or {}
        return Predictions(
            [text],
            usage=Usage(int(usage.get("inputTokens") or 0), int(usage.get("outputTokens") or 0)),
        )

    async def _invoke(self, body: dict[str, Any]) -> tuple[Any, Usage | None]:
        headers, data = await self.endpoint.send(json_body(body), _JSON)
        answer = self.endpoint.decode(data)
        tokens_in = headers.get("X-Amzn-Bedrock-Input-Token-Count")
        tokens_out = headers.get("X-Amzn-Bedrock-Output-Token-Count")
        usage = None
        if tokens_in is not None or tokens_out is not None:
            usage = Usage(int(tokens_in or 0), int(tokens_out or 0))
        elif isinstance(answer, dict) and "inputTextTokenCount" in answer:
            usage = Usage(int(answer["inputTextTokenCount"] or 0), 0)
        return answer, usage


def create(settings: ModelSettings, transports: TransportPool) -> BedrockProvider:
    """Build a Bedrock provider from a model's settings."""
    options = parse_options(settings, BedrockOptions)
    model_id = settings.target
    mode: Literal["converse", "invoke", "titan", "cohere"]
    if settings.task == "embedding":
        fmt = options.embedding_format or _guess_embedding_format(model_id)
        if fmt is None:
            raise ConfigurationError(
                f"model {settings.name!r}: cannot tell the embedding body of {model_id!r}; "
                "pass embedding_format='titan' or 'cohere'"
            )
        mode = fmt
    elif options.api == "invoke" or (options.api is None and settings.task != "text_generation"):
        mode = "invoke"
    else:
        mode = "converse"
    signer = aws_signer(settings, "bedrock", options.region, what="the bedrock provider")
    base = settings.endpoint or f"https://bedrock-runtime.{signer.region}.amazonaws.com"
    action = "converse" if mode == "converse" else "invoke"
    url = request_url(f"{base}/model/{quote(model_id, safe='')}/{action}")
    endpoint = CloudEndpoint(
        url, transports.get(url), dict(settings.headers), auth=signer, classify=aws_error
    )
    return BedrockProvider(options, endpoint, mode)


def _guess_embedding_format(model_id: str) -> Literal["titan", "cohere"] | None:
    # Model ids, inference profiles ("us.cohere.embed-...") and ARNs all contain these.
    if "titan-embed" in model_id:
        return "titan"
    if "cohere.embed" in model_id:
        return "cohere"
    return None


def _message(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": [{"text": content}]}
    return message


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(
            "input", f"an embedding input must be a non-empty string, got {describe(value)}"
        )
    return value


def _get(answer: Any, url: str, key: str) -> Any:
    if not isinstance(answer, dict) or key not in answer:
        raise ResponseDecodeError(f"{url}: answer has no {key!r}")
    return answer[key]
