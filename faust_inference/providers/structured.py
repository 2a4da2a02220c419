r"""Structured outputs: chat answers that follow a pydantic model.

``app.model(..., output_type=Ticket)`` makes a chat provider ask the API
for JSON in ``Ticket``'s schema, in the API's own words, and validate every
answer into a ``Ticket`` (``r.output`` is the object):

============================  ==============================================================
provider                      how the schema is asked for
============================  ==============================================================
``openai``, ``azure_openai``  ``response_format={"type": "json_schema", "json_schema":
                              {"name", "schema", "strict"}}``; ``json_mode="json_object"``
                              sends ``{"type": "json_object", "schema": ...}`` instead
                              (llama.cpp's server, older vLLM)
``gemini``, ``vertex``        ``generationConfig.responseMimeType="application/json"`` and
                              ``responseSchema`` (the OpenAPI subset Gemini takes)
``bedrock`` (Converse)        a tool whose ``inputSchema`` is the schema, forced with
                              ``toolChoice``; the tool call's input is the answer
============================  ==============================================================

An answer that is not valid JSON in the schema raises
:class:`~faust_inference.InvalidOutput`, which is retryable: the model's
``retries=`` ask again, and when they are exhausted the event is
dead-lettered with the validation error. Small models often wrap JSON in a
Markdown fence or a sentence; the JSON object is taken out of that first.

Example:
    >>> from pydantic import BaseModel
    >>> class Ticket(BaseModel):
    ...     category: str
    ...     urgent: bool
    >>> out = StructuredOutput(Ticket)
    >>> out.validate_text('```json\n{"category": "billing", "urgent": true}\n```', "http://h/v1")
    Ticket(category='billing', urgent=True)
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ValidationError

from faust_inference.config import ModelSettings
from faust_inference.exceptions import ConfigurationError, InvalidOutput
from faust_inference.providers.redaction import excerpt, redact_url

__all__ = ["JsonMode", "StructuredOutput", "structured_output"]

JsonMode = Literal["json_schema", "json_object"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_GEMINI_KEYS = frozenset(
    {
        "type",
        "format",
        "description",
        "nullable",
        "enum",
        "items",
        "properties",
        "required",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "anyOf",
    }
)


def structured_output(
    settings: ModelSettings, *, supported: bool, what: str
) -> StructuredOutput | None:
    """The model's structured output, if it set ``output_type=``.

    Args:
        settings: the model's settings.
        supported: whether this provider and task can ask for JSON.
        what: the provider and mode, for the error message.

    Raises:
        ConfigurationError: ``output_type`` given where it cannot work.
    """
    if settings.output_type is None:
        return None
    if not supported:
        raise ConfigurationError(
            f"model {settings.name!r}: output_type= needs a chat model "
            f"(task='text_generation' or 'classification' with openai, azure_openai, "
            f"gemini, vertex or bedrock's converse API); {what} cannot ask for JSON"
        )
    return StructuredOutput(settings.output_type)


class StructuredOutput:
    """One model's ``output_type``: its schema in each API's form, and validation.

    Args:
        output_type: the pydantic model every answer must validate into.
    """

    __slots__ = ("name", "output_type", "schema")

    def __init__(self, output_type: type[BaseModel]) -> None:
        self.output_type = output_type
        self.name = re.sub(r"[^A-Za-z0-9_-]", "_", output_type.__name__)[:64] or "output"
        self.schema: dict[str, Any] = _inline_refs(output_type.model_json_schema())

    # -- asking for it ---------------------------------------------------------------

    def openai_response_format(
        self, mode: JsonMode = "json_schema", *, strict: bool = True
    ) -> dict[str, Any]:
        """The ``response_format`` of an OpenAI-compatible chat request.

        Example:
            >>> class A(BaseModel):
            ...     x: int
            >>> StructuredOutput(A).openai_response_format("json_object")["type"]
            'json_object'
        """
        if mode == "json_object":
            return {"type": "json_object", "schema": self.schema}
        schema = _strict(self.schema) if strict else self.schema
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": schema, "strict": strict},
        }

    def gemini_generation_config(self) -> dict[str, Any]:
        """``generationConfig`` fields asking Gemini/Vertex for JSON in the schema."""
        return {"responseMimeType": "application/json", "responseSchema": _gemini(self.schema)}

    def bedrock_tool_config(self) -> dict[str, Any]:
        """A Converse ``toolConfig`` with one tool, forced, whose input is the answer."""
        return {
            "tools": [
                {
                    "toolSpec": {
                        "name": self.name,
                        "description": f"Record the answer as a {self.name} object.",
                        "inputSchema": {"json": self.schema},
                    }
                }
            ],
            "toolChoice": {"tool": {"name": self.name}},
        }

    # -- checking the answer ---------------------------------------------------------

    def validate_text(self, text: Any, url: str, secrets: Iterable[str] = ()) -> BaseModel:
        """Parse and validate a text answer (JSON, possibly fenced or inside prose).

        Raises:
            InvalidOutput: not JSON, or not in the schema (retryable).
        """
        if not isinstance(text, str) or not text.strip():
            raise self._invalid(url, "the answer is empty", text, secrets)
        data = _json_in(text)
        if data is _NOT_JSON:
            raise self._invalid(url, "the answer is not JSON", text, secrets)
        return self.validate_data(data, url, secrets, raw=text)

    def validate_data(
        self, data: Any, url: str, secrets: Iterable[str] = (), *, raw: Any = None
    ) -> BaseModel:
        """Validate decoded data (a tool call's input).

        Raises:
            InvalidOutput: not in the schema (retryable).
        """
        try:
            return self.output_type.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                for err in exc.errors(include_url=False)
            )
            raise self._invalid(url, problems, data if raw is None else raw, secrets) from None

    def _invalid(
        self, url: str, problem: str, answer: Any, secrets: Iterable[str]
    ) -> InvalidOutput:
        shown = answer if isinstance(answer, str) else orjson.dumps(answer, default=str).decode()
        secrets = tuple(secrets)
        name = self.output_type.__name__
        return InvalidOutput(
            f"{redact_url(url)}: the answer does not fit output_type {name}: "
            f"{excerpt(problem, secrets, limit=400)}; "
            f"answer: {excerpt(shown, secrets, limit=200)!r}"
        )


_NOT_JSON = object()


def _json_in(text: str) -> Any:
    candidates = [text]
    candidates += [m.group(1) for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return orjson.loads(candidate.strip())
        except orjson.JSONDecodeError:
            continue
    return _NOT_JSON


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every ``$ref`` to ``$defs`` replaced by its definition.

    Several APIs (Gemini, some OpenAI-compatible servers) do not follow
    references; recursive models are not supported by them anyway.
    """
    defs = schema.get("$defs", {})

    def walk(node: Any, depth: int) -> Any:
        if depth > 32:
            raise ConfigurationError("output_type: the schema nests too deeply (recursive model?)")
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                target = copy.deepcopy(defs[ref.rsplit("/", 1)[1]])
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return walk({**target, **rest}, depth + 1)
            return {k: walk(v, depth + 1) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v, depth + 1) for v in node]
        return node

    result: dict[str, Any] = walk(schema, 0)
    return result


def _strict(node: Any) -> Any:
    """OpenAI's strict mode: closed objects, every property required, no null defaults."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if not (k == "default" and v is None)}
    if out.get("type") == "object" and isinstance(out.get("properties"), dict):
        out["additionalProperties"] = False
        out["required"] = list(out["properties"])
    return out


def _gemini(node: Any) -> Any:
    """The OpenAPI 3.0 subset Gemini's ``responseSchema`` takes (types in capitals)."""
    if isinstance(node, list):
        return [_gemini(v) for v in node]
    if not isinstance(node, dict):
        return node
    options = node.get("anyOf")
    if isinstance(options, list):
        rest = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        if len(rest) == 1 and len(rest) < len(options):
            merged = {**{k: v for k, v in node.items() if k != "anyOf"}, **rest[0]}
            return {**_gemini(merged), "nullable": True}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "const":
            out["enum"] = [value]
        elif key == "format" and value not in ("date-time", "enum"):
            continue
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {name: _gemini(v) for name, v in value.items()}
            out["propertyOrdering"] = list(value)
        elif key == "type" and isinstance(value, str):
            out["type"] = value.upper()
        elif key in _GEMINI_KEYS:
            out[key] = _gemini(value)
    if "enum" in out and "type" not in out:
        out["type"] = "STRING"
    return out
