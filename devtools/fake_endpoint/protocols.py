"""Pure request -> answer functions for the three protocols the fake speaks.

Kept free of aiohttp so the answers are trivially deterministic and cheap:
every value is derived from the request alone (plus a request sequence number
for ids), which is what lets tests assert exact outputs.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import time
from typing import Any, NamedTuple

import orjson

from devtools.fake_endpoint.config import EndpointConfig

OIP_NUMERIC = frozenset(
    {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
    | {"FP16", "FP32", "FP64"}
)
OIP_DATATYPES = OIP_NUMERIC | {"BOOL", "BYTES"}


class BadRequestError(Exception):
    """The request is invalid; the server answers 400 in the route's error format.

    Attributes:
        rows: Rows the request carried, still counted as received.
    """

    def __init__(self, message: str, rows: int = 0) -> None:
        super().__init__(message)
        self.rows = rows


class Reply(NamedTuple):
    """A successful answer: JSON payload plus the number of rows it covered."""

    payload: Any
    rows: int


def _obj(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequestError("request body must be a JSON object")
    return body


def _check_batch(rows: int, cfg: EndpointConfig) -> None:
    if cfg.max_batch is not None and rows > cfg.max_batch:
        raise BadRequestError(f"batch of {rows} rows exceeds max_batch={cfg.max_batch}", rows)


def _words(text: str) -> int:
    """Approximate token count; good enough for a usage block tests can predict."""
    return len(text.split())


def _text(content: Any) -> str:
    """Extract text from an OpenAI message content (string or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def chat_completion(body: Any, cfg: EndpointConfig, seq: int) -> Reply:
    """Answer ``POST /v1/chat/completions`` with ``"echo: <last user message>"``.

    Args:
        body: Decoded request body.
        cfg: Current endpoint configuration.
        seq: Request sequence number, used for a unique yet predictable id.

    Returns:
        An OpenAI ``chat.completion`` object.

    Raises:
        BadRequestError: If ``model`` or ``messages`` is missing or malformed,
            or ``stream`` is requested (not supported by this fake).
    """
    req = _obj(body)
    model, messages = req.get("model"), req.get("messages")
    if not isinstance(model, str) or not model:
        raise BadRequestError("you must provide a model parameter")
    if not isinstance(messages, list) or not messages:
        raise BadRequestError("'messages' must be a non-empty array")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise BadRequestError("every message needs a string 'role'")
    if req.get("stream"):
        raise BadRequestError("streaming is not supported by the fake endpoint")
    users = [_text(m.get("content")) for m in messages if m["role"] == "user"]
    content = f"echo: {users[-1] if users else ''}"
    prompt = sum(_words(_text(m.get("content"))) for m in messages)
    completion = _words(content)
    payload = {
        "id": f"chatcmpl-fake-{seq}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    return Reply(payload, 1)


def embedding_vector(text: str, dim: int) -> list[float]:
    """Derive a unit-length vector from a hash of ``text``.

    Hashing makes equal strings map to equal vectors across processes and runs
    (unlike ``hash()``), and normalising mimics real embedding models so
    cosine-similarity code behaves.

    Args:
        text: Input string.
        dim: Vector dimension.

    Returns:
        ``dim`` floats with L2 norm 1.
    """
    raw = struct.unpack(f"<{dim}I", hashlib.shake_128(text.encode()).digest(4 * dim))
    vec = [x / 2147483648.0 - 1.0 for x in raw]
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


def embeddings(body: Any, cfg: EndpointConfig) -> Reply:
    """Answer ``POST /v1/embeddings`` for a string or a list of strings.

    Honours ``dimensions`` and ``encoding_format="base64"`` (little-endian
    float32, what the official OpenAI Python client requests by default).

    Args:
        body: Decoded request body.
        cfg: Current endpoint configuration (``dim``, ``max_batch``).

    Returns:
        An OpenAI embeddings ``list`` object.

    Raises:
        BadRequestError: On a missing model, bad input, dimensions or batch size.
    """
    req = _obj(body)
    model, inp = req.get("model"), req.get("input")
    if not isinstance(model, str) or not model:
        raise BadRequestError("you must provide a model parameter")
    texts = [inp] if isinstance(inp, str) else inp
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequestError("'input' must be a string or a non-empty array of strings")
    _check_batch(len(texts), cfg)
    dim = req.get("dimensions", cfg.dim)
    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 65536:
        raise BadRequestError("'dimensions' must be an integer between 1 and 65536", len(texts))
    as_b64 = req.get("encoding_format") == "base64"
    data = []
    for i, text in enumerate(texts):
        vec: Any = embedding_vector(text, dim)
        if as_b64:
            vec = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vec})
    tokens = sum(_words(t) for t in texts)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return Reply({"object": "list", "data": data, "model": model, "usage": usage}, len(texts))


def list_models(cfg: EndpointConfig) -> Any:
    """Answer ``GET /v1/models`` with the single configured model."""
    model = {"id": cfg.model, "object": "model", "created": 0, "owned_by": "fake-endpoint"}
    return {"object": "list", "data": [model]}


def _flatten(data: list[Any]) -> list[Any]:
    """Flatten OIP tensor data, which may be sent nested (row-major) or flat."""
    if not any(isinstance(x, list) for x in data):
        return data
    flat: list[Any] = []
    for x in data:
        flat.extend(_flatten(x) if isinstance(x, list) else (x,))
    return flat


def _element_ok(datatype: str, x: Any) -> bool:
    if datatype == "BOOL":
        return isinstance(x, bool)
    if datatype == "BYTES":
        return isinstance(x, str)
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (datatype.startswith("FP") and isinstance(x, float))


def _validate_input(tensor: Any) -> tuple[str, list[int], str, list[Any]]:
    if not isinstance(tensor, dict):
        raise BadRequestError("each input must be an object")
    name, shape, dtype, data = (tensor.get(k) for k in ("name", "shape", "datatype", "data"))
    if not isinstance(name, str) or not name:
        raise BadRequestError("input is missing a string 'name'")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise BadRequestError(f"input '{name}': 'shape' must be a list of non-negative ints")
    if dtype not in OIP_DATATYPES:
        raise BadRequestError(f"input '{name}': unsupported datatype {dtype!r}")
    if not isinstance(data, list):
        raise BadRequestError(f"input '{name}': 'data' must be a list")
    flat = _flatten(data)
    if len(flat) != math.prod(shape):
        raise BadRequestError(
            f"input '{name}': data has {len(flat)} elements but shape {shape} "
            f"needs {math.prod(shape)}"
        )
    if not all(_element_ok(dtype, x) for x in flat):
        raise BadRequestError(f"input '{name}': data does not match datatype {dtype}")
    return name, shape, dtype, flat


def _sigmoid(s: float) -> float:
    if s >= 0:
        return 1.0 / (1.0 + math.exp(-s))
    e = math.exp(s)
    return e / (1.0 + e)


def oip_infer(body: Any, name: str, version: str | None, cfg: EndpointConfig, seq: int) -> Reply:
    """Answer an Open Inference Protocol V2 ``infer`` request.

    A 2-D numeric first input ``[N, F]`` yields ``predict_proba`` ``[N, 2]``
    with ``p1 = sigmoid(sum(row))`` and ``p0 = 1 - p1`` (what a binary
    classifier served by MLServer returns); any other inputs are echoed back
    as outputs of the same name so text/BYTES clients can be tested too.

    Args:
        body: Decoded request body.
        name: Model name from the path.
        version: Model version from the path, if any.
        cfg: Current endpoint configuration.
        seq: Request sequence number, used as ``id`` when the request has none.

    Returns:
        An OIP inference response.

    Raises:
        BadRequestError: If inputs are missing or inconsistent (name, shape,
            datatype, data length) or the batch exceeds ``max_batch``.
    """
    req = _obj(body)
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequestError("'inputs' must be a non-empty list")
    tensors = [_validate_input(t) for t in inputs]
    _, shape, dtype, flat = tensors[0]
    rows = shape[0] if shape else 1
    _check_batch(rows, cfg)
    if len(shape) == 2 and dtype in OIP_NUMERIC:
        width = shape[1]
        out: list[float] = []
        for r in range(rows):
            p1 = _sigmoid(float(sum(flat[r * width : (r + 1) * width])))
            out += (1.0 - p1, p1)
        outputs = [{"name": "predict_proba", "shape": [rows, 2], "datatype": "FP64", "data": out}]
    else:
        outputs = [{"name": n, "shape": s, "datatype": d, "data": f} for n, s, d, f in tensors]
    payload = {
        "model_name": name,
        "model_version": version or cfg.model_version,
        "id": req.get("id", f"fake-{seq}"),
        "parameters": {},
        "outputs": outputs,
    }
    return Reply(payload, rows)


# The binary tensor data extension (Triton's), written apart from the library's
# own codec on purpose: a test double that shared the client's code could not
# catch a mistake in it.
_RAW_CODES = {
    "BOOL": "?", "INT8": "b", "INT16": "h", "INT32": "i", "INT64": "q",
    "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q",
    "FP16": "e", "FP32": "f", "FP64": "d",
}  # fmt: skip


def _raw_values(datatype: str, raw: bytes) -> list[Any]:
    if datatype == "BYTES":
        out: list[Any] = []
        i = 0
        while i < len(raw):
            (n,) = struct.unpack_from("<I", raw, i)
            out.append(raw[i + 4 : i + 4 + n].decode("utf-8", "replace"))
            i += 4 + n
        return out
    code = _RAW_CODES.get(datatype)
    if code is None:
        raise BadRequestError(f"datatype {datatype!r} has no binary form")
    size = struct.calcsize(code)
    if len(raw) % size:
        raise BadRequestError(f"{len(raw)} bytes are not whole {datatype} values")
    return list(struct.unpack(f"<{len(raw) // size}{code}", raw))


def _raw_bytes(datatype: str, data: list[Any]) -> bytes:
    if datatype == "BYTES":
        items = [str(x).encode() for x in data]
        return b"".join(struct.pack("<I", len(b)) + b for b in items)
    return struct.pack(f"<{len(data)}{_RAW_CODES[datatype]}", *data)


def oip_binary_request(body: bytes, header_length: str) -> tuple[Any, bool]:
    """Decode a binary-extension request: the JSON header, then each input's raw bytes.

    Returns:
        The request with every input's ``data`` filled in, and whether the
        answer should be binary too (``binary_data_output`` or an output
        with ``binary_data``).

    Raises:
        BadRequestError: a bad header length, or sizes that do not add up.
    """
    try:
        split = int(header_length)
        req = orjson.loads(body[:split])
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise BadRequestError(f"bad binary request header: {exc}") from None
    offset = split
    for tensor in _obj(req).get("inputs") or []:
        size = (tensor.get("parameters") or {}).pop("binary_data_size", None)
        if size is None:
            continue
        if not isinstance(size, int) or offset + size > len(body):
            raise BadRequestError(f"input {tensor.get('name')!r}: binary data is cut off")
        tensor["data"] = _raw_values(str(tensor.get("datatype")), body[offset : offset + size])
        offset += size
    if offset != len(body):
        raise BadRequestError(f"{len(body) - offset} bytes after the last input's binary data")
    params = req.get("parameters") or {}
    binary_out = bool(params.pop("binary_data_output", False)) or any(
        (o.get("parameters") or {}).get("binary_data") for o in req.get("outputs") or []
    )
    return req, binary_out


def oip_binary_reply(payload: Any) -> tuple[bytes, int]:
    """An answer with every output's data as raw bytes after the JSON header.

    Returns:
        The body and the header's length (``Inference-Header-Content-Length``).
    """
    raws = []
    for output in payload["outputs"]:
        raw = _raw_bytes(output["datatype"], output.pop("data"))
        output.setdefault("parameters", {})["binary_data_size"] = len(raw)
        raws.append(raw)
    head = orjson.dumps(payload)
    return head + b"".join(raws), len(head)


def oip_metadata(name: str, cfg: EndpointConfig) -> Any:
    """Answer ``GET /v2/models/{name}`` in the shape MLServer uses."""
    return {
        "name": name,
        "versions": [cfg.model_version],
        "platform": "fake-endpoint",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, -1]}],
        "outputs": [{"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]}],
    }


def _transform(x: Any) -> Any:
    if isinstance(x, bool) or x is None:
        return x
    if isinstance(x, int | float):
        return x * 2
    if isinstance(x, str):
        return len(x)
    if isinstance(x, list):
        return [_transform(v) for v in x]
    if isinstance(x, dict):
        return {k: _transform(v) for k, v in x.items()}
    return x


def predict(body: Any, cfg: EndpointConfig) -> Reply:
    """Answer plain-JSON ``POST /predict``: ``{"inputs": [...]}`` -> ``{"outputs": [...]}``.

    Each input is transformed recursively: numbers double, strings become
    their length, lists and objects are mapped element-wise, ``bool``/``null``
    pass through. One output per input, in order, so clients can check
    their row alignment.

    Args:
        body: Decoded request body.
        cfg: Current endpoint configuration (``max_batch``).

    Returns:
        The outputs payload.

    Raises:
        BadRequestError: If ``inputs`` is not a list, is nested too deeply or
            exceeds ``max_batch``.
    """
    inputs = _obj(body).get("inputs")
    if not isinstance(inputs, list):
        raise BadRequestError("'inputs' must be a JSON list")
    _check_batch(len(inputs), cfg)
    try:
        outputs = [_transform(x) for x in inputs]
    except RecursionError:
        raise BadRequestError("'inputs' is nested too deeply", len(inputs)) from None
    return Reply({"outputs": outputs}, len(inputs))
