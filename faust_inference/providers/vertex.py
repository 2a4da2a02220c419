"""Google: Vertex AI online prediction (``vertex``) and the Gemini API (``gemini``).

``vertex`` authenticates with google-auth (:mod:`.gcp`) and calls a deployed
endpoint or a publisher model; ``gemini`` calls generativelanguage.googleapis.com
with an API key::

    app.inference.connections.add(name="gcp", provider="vertex", project="acme-ml",
                                  region="europe-west4")
    churn = app.model("churn", connection="gcp", remote_name="1234567890", batch_size=32)
    embed = app.model("embed", connection="gcp", task="embedding",
                      remote_name="publishers/google/models/text-embedding-005", batch_size=16)
    gemini = app.model("triage", provider="gemini", remote_name="gemini-2.0-flash",
                       task="text_generation", system_prompt="Label the ticket.")

Wire formats:

- Vertex ``projects.locations.endpoints.predict``:
  ``POST https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/endpoints/{id}:predict``
  (or ``.../{publishers/google/models/m}:predict``) with ``{"instances": [...],
  "parameters": {...}}``, answered by ``{"predictions": [...], "deployedModelId",
  "model", "modelVersionId"}``. Text-embedding models take instances
  ``{"content": text, "task_type": ...}`` and answer
  ``predictions[i].embeddings.{values, statistics.token_count}``.
- ``generateContent`` (Vertex publisher models and the Gemini API): ``{"contents":
  [{"role": "user", "parts": [{"text": ...}]}], "systemInstruction": {"parts":
  [...]}, "generationConfig": {...}}``, answered by ``{"candidates": [{"content":
  {"parts": [{"text": ...}]}, "finishReason"}], "usageMetadata":
  {"promptTokenCount", "candidatesTokenCount"}, "modelVersion"}``.
- Gemini ``models.embedContent`` (``{"content": {"parts": [{"text"}]}}`` ->
  ``{"embedding": {"values"}}``) for one text per request, and
  ``models.batchEmbedContents`` (``{"requests": [...]}`` -> ``{"embeddings":
  [{"values"}]}``) when ``batch_size`` > 1; the key goes in ``x-goog-api-key``.

Chat inputs (:mod:`.chat`): system messages of the input, after
``system_prompt=``, become ``systemInstruction`` (Gemini and Vertex take no
``system`` role); ``assistant`` becomes ``model``; a dict with ``contents``
is sent as the API's own body. With ``output_type=SomePydanticModel``,
``generationConfig`` asks for ``application/json`` in the model's schema
(``responseSchema``), and the output is the validated object.

Options:
    project, location: Vertex only (else the connection's ``project``/``region``,
        else the credentials' project and ``us-central1``).
    api_version: ``v1`` (Vertex) or ``v1beta`` (Gemini) by default.
    parameters: Vertex ``parameters``; Gemini/Vertex ``generationConfig`` for chat.
    system_prompt: ``systemInstruction`` (before the input's own system messages).
    task_type, output_dimensionality: embedding options.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from faust_inference.config import ModelSettings
from faust_inference.core.provider import Predictions
from faust_inference.exceptions import ConfigurationError, ResponseDecodeError
from faust_inference.providers.auth.google import google_credentials, google_token_cache
from faust_inference.providers.auth.keys import resolve_api_key
from faust_inference.providers.auth.tokens import TokenAuth
from faust_inference.providers.chat import chat_request, require_text
from faust_inference.providers.classify import google_error
from faust_inference.providers.endpoint import Endpoint
from faust_inference.providers.options import ProviderOptions, parse_options
from faust_inference.providers.structured import StructuredOutput, structured_output
from faust_inference.providers.transport import TransportPool
from faust_inference.results import Usage

__all__ = ["GoogleOptions", "GoogleProvider", "create", "create_gemini"]

Mode = Literal["predict", "embed_predict", "generate", "embed", "batch_embed"]


class GoogleOptions(ProviderOptions):
    """Options of the ``vertex`` and ``gemini`` providers."""

    project: str | None = None
    location: str | None = None
    api_version: str | None = None
    parameters: dict[str, Any] = {}
    system_prompt: str | None = None
    task_type: str | None = None
    output_dimensionality: int | None = None


class GoogleProvider:
    """One predict, generateContent or embed call per request."""

    def __init__(
        self,
        options: GoogleOptions,
        endpoint: Endpoint,
        mode: Mode,
        model: str,
        structured: StructuredOutput | None = None,
    ) -> None:
        self.structured = structured
        self.options = options
        self.endpoint = endpoint
        self.url = endpoint.url
        self.mode = mode
        self.model = model
        self.max_batch_size: int | None = 1 if mode in ("generate", "embed") else None

    async def infer(self, inputs: Sequence[Any]) -> Predictions:
        """Send the batch in the mode's wire format."""
        if self.mode == "generate":
            return await self._generate(inputs[0])
        if self.mode == "predict":
            body: dict[str, Any] = {"instances": list(inputs)}
            if self.options.parameters:
                body["parameters"] = self.options.parameters
            answer = await self.endpoint.post(body)
            predictions = _list(answer, "predictions", len(inputs), self.url)
            version = answer.get("modelVersionId") or answer.get("deployedModelId")
            return Predictions(predictions, model_version=str(version) if version else None)
        texts = [require_text(v) for v in inputs]
        if self.mode == "embed_predict":
            return await self._embed_predict(texts)
        extra: dict[str, Any] = {}
        if self.options.task_type:
            extra["taskType"] = self.options.task_type
        if self.options.output_dimensionality:
            extra["outputDimensionality"] = self.options.output_dimensionality
        if self.mode == "embed":
            answer = await self.endpoint.post({"content": _parts(texts[0]), **extra})
            try:
                return Predictions([answer["embedding"]["values"]])
            except (KeyError, TypeError):
                raise ResponseDecodeError(f"{self.url}: answer has no embedding.values") from None
        requests = [{"model": f"models/{self.model}", "content": _parts(t), **extra} for t in texts]
        answer = await self.endpoint.post({"requests": requests})
        items = _list(answer, "embeddings", len(texts), self.url)
        try:
            return Predictions([item["values"] for item in items])
        except (KeyError, TypeError):
            raise ResponseDecodeError(f"{self.url}: an embedding has no values") from None

    def secrets(self) -> tuple[str, ...]:
        """The credentials this provider sends (to scrub from messages)."""
        return self.endpoint.secrets()

    async def aclose(self) -> None:
        """The transport is shared and closed by its pool."""

    async def _embed_predict(self, texts: list[str]) -> Predictions:
        instances: list[dict[str, Any]] = [{"content": t} for t in texts]
        if self.options.task_type:
            instances = [{**i, "task_type": self.options.task_type} for i in instances]
        body: dict[str, Any] = {"instances": instances}
        parameters = dict(self.options.parameters)
        if self.options.output_dimensionality:
            parameters["outputDimensionality"] = self.options.output_dimensionality
        if parameters:
            body["parameters"] = parameters
        answer = await self.endpoint.post(body)
        predictions = _list(answer, "predictions", len(texts), self.url)
        try:
            vectors = [p["embeddings"]["values"] for p in predictions]
            tokens = sum(
                int(p["embeddings"].get("statistics", {}).get("token_count", 0))
                for p in predictions
            )
        except (KeyError, TypeError, AttributeError):
            raise ResponseDecodeError(
                f"{self.url}: a prediction has no embeddings.values"
            ) from None
        return Predictions(vectors, usage=Usage(tokens, 0))

    async def _generate(self, value: Any) -> Predictions:
        request = chat_request(
            value,
            system_prompt=self.options.system_prompt,
            native_key="contents",
            what="a generateContent input",
        )
        body: dict[str, Any] = dict(request.extra)
        if request.messages:
            body["contents"] = [_content(m) for m in request.messages]
        if request.system and "systemInstruction" not in body:
            # Gemini and Vertex have no system role: instructions go apart.
            body["systemInstruction"] = _parts("\n\n".join(request.system))
        config = {**self.options.parameters, **body.get("generationConfig", {})}
        if self.structured is not None:
            config.update(self.structured.gemini_generation_config())
        if config:
            body["generationConfig"] = config
        answer = await self.endpoint.post(body)
        try:
            candidate = answer["candidates"][0]
            text = "".join(p.get("text", "") for p in candidate["content"]["parts"])
        except (KeyError, IndexError, TypeError):
            feedback = answer.get("promptFeedback") if isinstance(answer, dict) else None
            reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
            raise ResponseDecodeError(
                f"{self.url}: no candidate in the answer"
                + (f" (prompt blocked: {reason})" if reason else "")
            ) from None
        meta = answer.get("usageMetadata") or {}
        usage = Usage(
            int(meta.get("promptTokenCount") or 0), int(meta.get("candidatesTokenCount") or 0)
        )
        version = answer.get("modelVersion")
        output: Any = text
        if self.structured is not None:
            output = self.structured.validate_text(text, self.url, self.secrets())
        return Predictions([output], usage=usage, model_version=str(version) if version else None)


def create(settings: ModelSettings, transports: TransportPool) -> GoogleProvider:
    """Build a Vertex AI provider (google-auth credentials) from a model's settings."""
    options = parse_options(settings, GoogleOptions)
    what = "the vertex provider"
    credentials, default_project = google_credentials(settings, what)
    conn = settings.connection
    project = options.project or (conn.project if conn else None) or default_project
    if not project:
        raise ConfigurationError(
            f"model {settings.name!r} (vertex) needs a Google Cloud project: project= "
            "on the model or its connection"
        )
    location = options.location or (conn.region if conn else None) or "us-central1"
    host = (
        "aiplatform.googleapis.com"
        if location == "global"
        else f"{location}-aiplatform.googleapis.com"
    )
    base = settings.endpoint or f"https://{host}"
    parent = f"projects/{quote(project, safe='')}/locations/{quote(location, safe='')}"
    target = settings.target
    mode: Mode
    if settings.task == "text_generation":
        mode, method = "generate", "generateContent"
        resource = target if "/" in target else f"publishers/google/models/{target}"
    else:
        mode = "embed_predict" if settings.task == "embedding" else "predict"
        method = "predict"
        resource = target if "/" in target else f"endpoints/{quote(target, safe='')}"
    if not resource.startswith("projects/"):
        resource = f"{parent}/{resource}"
    url = f"{base}/{options.api_version or 'v1'}/{resource}:{method}"
    auth = TokenAuth(google_token_cache(credentials, what))
    endpoint = Endpoint.for_model(settings, transports, url, auth=auth, classify=google_error)
    structured = structured_output(
        settings, supported=mode == "generate", what=f"vertex's {method}"
    )
    return GoogleProvider(options, endpoint, mode, target, structured)


def create_gemini(settings: ModelSettings, transports: TransportPool) -> GoogleProvider:
    """Build a Gemini API provider (API key) from a model's settings."""
    options = parse_options(settings, GoogleOptions)
    if options.project or options.location:
        raise ConfigurationError(
            f"model {settings.name!r}: the Gemini API takes no project or location; "
            "use provider='vertex' for Vertex AI"
        )
    base = settings.endpoint or "https://generativelanguage.googleapis.com"
    hosted = (urlsplit(base).hostname or "").endswith("googleapis.com")
    env = (
        "GOOGLE_API_KEY"
        if "GOOGLE_API_KEY" in os.environ and "GEMINI_API_KEY" not in os.environ
        else "GEMINI_API_KEY"
    )
    key = resolve_api_key(settings, default_env=env, required=hosted)
    model = settings.target.removeprefix("models/")
    mode: Mode
    if settings.task == "embedding":
        batched = settings.batch_size != "auto" and settings.batch_size > 1
        mode = "batch_embed" if batched else "embed"
        method = "batchEmbedContents" if mode == "batch_embed" else "embedContent"
    else:
        mode, method = "generate", "generateContent"
    url = f"{base}/{options.api_version or 'v1beta'}/models/{quote(model, safe='')}:{method}"
    endpoint = Endpoint.for_model(
        settings,
        transports,
        url,
        key=key,
        key_header="x-goog-api-key",
        key_scheme="",
        classify=google_error,
    )
    structured = structured_output(
        settings, supported=mode == "generate", what=f"gemini's {method}"
    )
    return GoogleProvider(options, endpoint, mode, model, structured)


def _parts(text: str) -> dict[str, Any]:
    return {"parts": [{"text": text}]}


def _content(message: dict[str, Any]) -> dict[str, Any]:
    role = "model" if message["role"] == "assistant" else message["role"]
    if "parts" in message:
        return {**message, "role": role}
    content = message.get("content")
    if isinstance(content, list):  # OpenAI-style content parts: keep the text ones
        return {
            "role": role,
            "parts": [
                {"text": str(p["text"])} for p in content if isinstance(p, dict) and "text" in p
            ],
        }
    return {"role": role, **_parts("" if content is None else str(content))}


def _list(answer: Any, key: str, n: int, url: str) -> list[Any]:
    items = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(items, list) or len(items) != n:
        found = len(items) if isinstance(items, list) else "no"
        raise ResponseDecodeError(f"{url}: expected {n} {key}, got {found}")
    return items
