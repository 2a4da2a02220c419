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

A system message in the input, and ``system_prompt=``, go to Converse's
top-level ``system`` (the model's prompt first); the conversation keeps its
order. With ``output_type=SomePydanticModel`` (Converse only), the request
carries one tool whose ``inputSchema`` is the model's JSON schema, forced
with ``toolChoice`` (the models that support forcing a tool: Anthropic
Claude 3+, Mistral Large, Amazon Nova), and the tool call's input,
validated, is the output.

Options:
    region: AWS region (else the connection's, else botocore's configuration).
    api: ``converse`` (default for chat) or ``invoke``.
    system_prompt: the system prompt (converse), before the input's own.
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
from faust_inference.providers.auth.sigv4 import aws_signer
from faust_inference.providers.chat import chat_request, describe, require_text
from faust_inference.providers.classify import aws_error
from faust_inference.providers.endpoint import Endpoint, request_url
from faust_inference.providers.options import ProviderOptions, parse_options
from faust_inference.providers.structured import StructuredOutput, structured_output
from faust_inference.providers.transport import TransportPool
from faust_inference.results import Usage

__all__ = ["BedrockOptions", "BedrockProvider", "create"]


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
        endpoint: Endpoint,
        mode: Literal["converse", "invoke", "titan", "cohere"],
        structured: StructuredOutput | None = None,
    ) -> None:
        self.structured = structured
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
            texts = [require_text(v) for v in inputs]
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
                {"inputText": require_text(inputs[0]), **self.options.parameters}
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

    def secrets(self) -> tuple[str, ...]:
        """The credentials this provider signs with (to scrub from messages)."""
        return self.endpoint.secrets()

    async def aclose(self) -> None:
        """The transport is shared and closed by its pool."""

    async def _converse(self, value: Any) -> Predictions:
        request = chat_request(
            value, system_prompt=self.options.system_prompt, what="a Converse input"
        )
        body: dict[str, Any] = dict(request.extra)
        body["messages"] = [_message(m) for m in request.messages]
        if request.system:
            # Converse takes system text at the top level, never as a message role.
            body["system"] = [{"text": t} for t in request.system] + list(body.get("system", []))
        if self.structured is not None:
            body["toolConfig"] = self.structured.bedrock_tool_config()
        if self.options.parameters:
            body["inferenceConfig"] = {**self.options.parameters, **body.get("inferenceConfig", {})}
        if self.options.additional_fields:
            body.setdefault("additionalModelRequestFields", self.options.additional_fields)
        answer = await self.endpoint.post(body)
        try:
            blocks = answer["output"]["message"]["content"]
            text = "".join(b["text"] for b in blocks if "text" in b)
        except (KeyError, TypeError) as exc:
            raise self.endpoint.bad_answer(
                f"unexpected Converse answer ({exc!r})", answer
            ) from None
        output: Any = text
        if self.structured is not None:
            calls = [b["toolUse"] for b in blocks if isinstance(b.get("toolUse"), dict)]
            if calls:
                output = self.structured.validate_data(
                    calls[0].get("input"), self.url, self.secrets()
                )
            else:
                output = self.structured.validate_text(text, self.url, self.secrets())
        usage = answer.get("usage") or {}
        return Predictions(
            [output],
            usage=Usage(int(usage.get("inputTokens") or 0), int(usage.get("outputTokens") or 0)),
        )

    async def _invoke(self, body: dict[str, Any]) -> tuple[Any, Usage | None]:
        response = await self.endpoint.send(self.endpoint.codec.encode(body))
        headers = response.headers
        answer = self.endpoint.decode(response.body, headers)
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
    structured = structured_output(
        settings, supported=mode == "converse", what=f"bedrock's {mode} mode"
    )
    signer = aws_signer(settings, "bedrock", options.region, what="the bedrock provider")
    base = settings.endpoint or f"https://bedrock-runtime.{signer.region}.amazonaws.com"
    action = "converse" if mode == "converse" else "invoke"
    url = request_url(f"{base}/model/{quote(model_id, safe='')}/{action}")
    endpoint = Endpoint.for_model(settings, transports, url, auth=signer, classify=aws_error)
    return BedrockProvider(options, endpoint, mode, structured)


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


def _get(answer: Any, url: str, key: str) -> Any:
    if not isinstance(answer, dict) or key not in answer:
        raise ResponseDecodeError(f"{url}: answer has no {key!r}")
    return answer[key]
