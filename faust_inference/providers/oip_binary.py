"""The Open Inference Protocol's binary tensor data extension over REST, and gzip.

JSON spells every float out in decimal: a 4,096-float row is about 80 KB of
text that the client formats and the server parses again. The binary tensor
data extension (Triton's, and tritonclient's, which MLServer's ``mlserver
infer`` uses) sends the JSON header without ``data`` and appends each
tensor's raw little-endian bytes after it::

    POST /v2/models/fraud/infer
    Inference-Header-Content-Length: 151
    Content-Type: application/octet-stream

    {"inputs":[{"name":"features","shape":[2,10],"datatype":"FP64",
                "parameters":{"binary_data_size":160}}],
     "parameters":{"binary_data_output":true}}<160 raw bytes>

The answer has the same layout when the server honours
``binary_data_output``; an answer without the header is plain JSON, so a
server that ignores the request still works. Which servers accept a binary
request: Triton does; MLServer 1.7's REST server does not (its request
parser reads JSON only; it accepts raw tensors over gRPC). Use
``protocol="grpc"`` for MLServer.

``gzip`` compresses the request body (``Content-Encoding: gzip``) when it is
at least :data:`GZIP_MIN_BYTES`; MLServer and Triton decompress it, and
aiohttp already asks for compressed answers. A server that answers 415 to a
compressed request gets uncompressed ones from then on.

Both are chosen by the ``kserve`` provider's options (``binary=True``,
``compression="gzip"``); :class:`OipRestEndpoint` is the REST wire they share.

Example:
    >>> body, headers = encode_request(
    ...     {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]})
    >>> split = int(headers["Inference-Header-Content-Length"])
    >>> body[split:] == to_raw("FP32", [1.0, 2.0])       # 8 bytes after the JSON header
    True
"""

from __future__ import annotations

import gzip
import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from faust_inference.exceptions import ClientError, InvalidInput, ResponseDecodeError
from faust_inference.providers.endpoint import Endpoint
from faust_inference.providers.redaction import redact_url

__all__ = [
    "GZIP_MIN_BYTES",
    "HEADER_LENGTH",
    "OipRestEndpoint",
    "decode_response",
    "encode_request",
    "from_raw",
    "to_raw",
]

logger = logging.getLogger(__name__)

HEADER_LENGTH = "Inference-Header-Content-Length"
"""The header that says where the JSON part of a binary body ends."""
GZIP_MIN_BYTES = 1024
"""Smaller bodies are sent as they are: compressing them costs more CPU than it saves."""

# Little-endian, standard sizes: the layout the protocol prescribes for raw data.
_STRUCT_CODES = {
    "BOOL": "?",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
}
_LENGTH = struct.Struct("<I")
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def to_raw(datatype: str, data: Sequence[Any], name: str = "input") -> bytes:
    """A tensor's flat values as the protocol's raw bytes (little-endian).

    ``BYTES`` elements are each prefixed with their length (4 bytes), as in
    Triton's and MLServer's raw format; strings are sent UTF-8 encoded.

    Example:
        >>> to_raw("INT32", [1, 2]).hex()
        '0100000002000000'

    Raises:
        InvalidInput: a value does not fit the datatype (names the tensor).
    """
    if datatype == "BYTES":
        parts: list[bytes] = []
        for value in data:
            item = value.encode() if isinstance(value, str) else bytes(value)
            parts += (_LENGTH.pack(len(item)), item)
        return b"".join(parts)
    code = _STRUCT_CODES.get(datatype)
    if code is None:
        raise InvalidInput(name, f"datatype {datatype!r} has no binary form; use binary=False")
    try:
        return struct.pack(f"<{len(data)}{code}", *data)
    except (struct.error, TypeError) as exc:
        raise InvalidInput(
            name, f"values do not fit datatype {datatype}: {exc}; fix the datatype option"
        ) from None


def from_raw(datatype: str, raw: bytes | memoryview, where: str = "answer") -> list[Any]:
    """The flat values of a tensor from its raw bytes; ``BYTES`` become strings when UTF-8.

    Example:
        >>> from_raw("FP32", to_raw("FP32", [0.5, 2.0]))
        [0.5, 2.0]

    Raises:
        ResponseDecodeError: the bytes do not hold whole values of that datatype.
    """
    if datatype == "BYTES":
        out: list[Any] = []
        view, offset = memoryview(raw), 0
        while offset < len(view):
            if offset + 4 > len(view):
                raise ResponseDecodeError(f"{where}: a BYTES element is cut off")
            (size,) = _LENGTH.unpack_from(view, offset)
            item = bytes(view[offset + 4 : offset + 4 + size])
            if len(item) != size:
                raise ResponseDecodeError(f"{where}: a BYTES element is cut off")
            try:
                out.append(item.decode())
            except UnicodeDecodeError:
                out.append(item)
            offset += 4 + size
        return out
    code = _STRUCT_CODES.get(datatype)
    if code is None:
        raise ResponseDecodeError(f"{where}: unknown datatype {datatype!r}")
    size = struct.calcsize(code)
    if len(raw) % size:
        raise ResponseDecodeError(
            f"{where}: {len(raw)} bytes are not whole {datatype} values of {size} bytes"
        )
    return list(struct.unpack(f"<{len(raw) // size}{code}", raw))


def encode_request(body: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A V2 request (JSON form, with ``data``) as a binary body and its headers.

    Every input's ``data`` moves behind the JSON header; outputs are asked
    for in binary too (``binary_data`` on each requested output, or
    ``binary_data_output`` on the request when none are named).

    Raises:
        InvalidInput: a value does not fit its tensor's datatype.
    """
    raws: list[bytes] = []
    inputs = []
    for tensor in body["inputs"]:
        raw = to_raw(tensor["datatype"], tensor["data"], tensor.get("name", "input"))
        raws.append(raw)
        header = {k: v for k, v in tensor.items() if k != "data"}
        header["parameters"] = {**tensor.get("parameters", {}), "binary_data_size": len(raw)}
        inputs.append(header)
    request: dict[str, Any] = {**body, "inputs": inputs}
    outputs = body.get("outputs")
    if outputs:
        request["outputs"] = [
            {**o, "parameters": {**o.get("parameters", {}), "binary_data": True}} for o in outputs
        ]
    else:
        request["parameters"] = {**body.get("parameters", {}), "binary_data_output": True}
    head = orjson.dumps(request)
    headers = {
        "Content-Type": "application/octet-stream",
        "Accept": "application/json, application/octet-stream",
        HEADER_LENGTH: str(len(head)),
    }
    return head + b"".join(raws), headers


def decode_response(data: bytes, header_length: str | None, url: str = "answer") -> Any:
    """A V2 answer in JSON form: binary output tensors get their ``data`` back.

    Raises:
        ResponseDecodeError: the header is not JSON, or the binary part does
            not match the sizes the header announces.
    """
    if header_length is None:
        return _loads(data, url)
    try:
        split = int(header_length)
    except ValueError:
        raise ResponseDecodeError(f"{url}: bad {HEADER_LENGTH} {header_length!r}") from None
    if not 0 <= split <= len(data):
        raise ResponseDecodeError(f"{url}: {HEADER_LENGTH} {split} exceeds the body")
    answer = _loads(data[:split], url)
    view, offset = memoryview(data), split
    for output in answer.get("outputs", []) if isinstance(answer, dict) else ():
        params = output.get("parameters") or {}
        size = params.pop("binary_data_size", None)
        if size is None:
            continue
        if not isinstance(size, int) or offset + size > len(data):
            raise ResponseDecodeError(f"{url}: output {output.get('name')!r} is cut off")
        output["data"] = from_raw(str(output.get("datatype")), view[offset : offset + size], url)
        offset += size
    return answer


class OipRestEndpoint:
    """A model's :class:`~faust_inference.providers.Endpoint` with a V2 wire format.

    Binary tensors and gzip change the body and its headers per request,
    so this sits on the endpoint's :meth:`~faust_inference.providers.Endpoint.send`:
    credentials, the size cap and error classification stay the endpoint's.
    ``post(body)`` takes and returns the protocol's JSON form, like the
    endpoint's own, so the kserve provider and
    :class:`~faust_inference.providers.pool.ReplicaPool` use either alike.

    Example:
        >>> from faust_inference.providers import Endpoint, TransportPool
        >>> wire = OipRestEndpoint(
        ...     Endpoint("http://127.0.0.1:8080/v2/models/fraud/infer", TransportPool()),
        ...     binary=True)
        >>> wire
        OipRestEndpoint('http://127.0.0.1:8080/v2/models/fraud/infer', binary=True)

    Args:
        endpoint: the model's ``.../infer`` endpoint.
        binary: send and ask for binary tensor data.
        compression: ``"gzip"`` to compress request bodies of at least
            :data:`GZIP_MIN_BYTES`; None to send them as they are.
    """

    __slots__ = ("binary", "compression", "endpoint")

    def __init__(
        self, endpoint: Endpoint, *, binary: bool = False, compression: str | None = None
    ) -> None:
        self.endpoint = endpoint
        self.binary = binary
        self.compression = compression

    @property
    def url(self) -> str:
        """The endpoint's URL."""
        return self.endpoint.url

    async def post(self, body: Mapping[str, Any]) -> Any:
        """Send one V2 request; the answer in JSON form, or one of our errors."""
        if self.binary:
            data, headers = encode_request(body)
        else:
            data, headers = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), _JSON_HEADERS
        plain = data
        if self.compression == "gzip" and len(data) >= GZIP_MIN_BYTES:
            data = gzip.compress(data, compresslevel=1)
            headers = {**headers, "Content-Encoding": "gzip"}
        try:
            try:
                response = await self.endpoint.send(data, headers)
            except ClientError as exc:
                if exc.status != 415 or data is plain:
                    raise
                logger.warning(
                    "%s refuses gzip-compressed requests (415); sending them uncompressed",
                    redact_url(self.url),
                )
                self.compression = None
                headers = {k: v for k, v in headers.items() if k != "Content-Encoding"}
                response = await self.endpoint.send(plain, headers)
        except ClientError as exc:
            if self.binary and exc.status in (400, 415, 422):
                raise ClientError(
                    f"{exc} (sent as binary tensor data: this server may not support the "
                    "binary extension; use binary=False, or protocol='grpc')",
                    status=exc.status,
                ) from exc
            raise
        return decode_response(
            response.body, response.headers.get(HEADER_LENGTH), redact_url(self.url)
        )

    def __repr__(self) -> str:
        extra = (", binary=True" if self.binary else "") + (
            f", compression={self.compression!r}" if self.compression else ""
        )
        return f"OipRestEndpoint({redact_url(self.url)!r}{extra})"


def _loads(data: bytes, url: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # No excerpt: the transport's error path is the one that scrubs bodies.
        raise ResponseDecodeError(f"{url}: the answer's JSON part does not parse ({exc})") from exc
