"""The Open Inference Protocol over gRPC: ``GRPCInferenceService/ModelInfer``.

MLServer, KServe and Triton serve the protocol's gRPC service beside REST
(MLServer on its ``grpc_port``, 8081 by default). Tensors travel as
protobuf, numeric ones as raw little-endian bytes (``raw_input_contents``),
over one HTTP/2 connection that multiplexes every request in flight::

    fraud = app.model(
        "fraud", provider="kserve", protocol="grpc",
        endpoint="http://127.0.0.1:8081",      # https:// for TLS
        version="v1", input_name="features",
    )

:class:`OipGrpcEndpoint` takes and returns the protocol's JSON form (the
dictionaries the REST wire carries), so the kserve provider encodes rows and
decodes outputs once for every wire format. The messages are generated from
``oip_v2.proto`` (the protocol's own, see its header); this module only
fills them in.

Status codes become this package's errors once, here: ``UNAVAILABLE`` and
``CANCELLED`` are :class:`TransportError`, ``DEADLINE_EXCEEDED``
:class:`InferenceTimeout`, ``RESOURCE_EXHAUSTED`` :class:`RateLimited`,
``INTERNAL``/``UNKNOWN`` :class:`ServerError` (500, as MLServer answers a
malformed row, so a batch is split to find it), the request's own faults
(``INVALID_ARGUMENT``, ``NOT_FOUND`` ...) :class:`ClientError`.

``grpcio`` is an optional dependency: ``pip install 'faust-inference[grpc]'``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from faust_inference.exceptions import (
    ClientError,
    ConfigurationError,
    EndpointNotReady,
    InferenceTimeout,
    InvalidInput,
    ModelNotFound,
    ProviderError,
    RateLimited,
    ResponseDecodeError,
    ServerError,
    TransportError,
)
from faust_inference.providers.oip_binary import from_raw, to_raw
from faust_inference.providers.redaction import scrub

if TYPE_CHECKING:
    import grpc
    import grpc.aio

    from faust_inference.providers import oip_v2_pb2

__all__ = ["INFER_METHOD", "MAX_MESSAGE_BYTES", "READY_METHOD", "OipGrpcEndpoint", "grpc_error"]

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
"""The protocol's service path (KServe's package is ``inference``)."""
READY_METHOD = "/inference.GRPCInferenceService/ModelReady"
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
"""Largest message either way; gRPC's default of 4 MB is small for batches of embeddings."""

# Where each datatype's values live in InferTensorContents (answers without raw bytes).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _modules() -> tuple[Any, Any]:
    """``grpc.aio`` and the generated messages, or an error naming the extra to install."""
    try:
        aio = importlib.import_module("grpc.aio")
        pb2 = importlib.import_module("faust_inference.providers.oip_v2_pb2")
    except ImportError as exc:
        raise ConfigurationError(
            "protocol='grpc' needs grpcio and protobuf: pip install 'faust-inference[grpc]'"
        ) from exc
    return aio, pb2


class OipGrpcEndpoint:
    """One model on one gRPC server: ``post(body)`` sends a V2 request, returns the answer.

    The channel opens on the first request (inside the running loop) and is
    closed by :meth:`aclose`. The repr and every error name the target
    without credentials.

    Example:
        >>> endpoint = OipGrpcEndpoint("http://127.0.0.1:8081", "fraud", "v1")
        >>> endpoint.url
        'grpc://127.0.0.1:8081/fraud'
        >>> answer = await endpoint.post(  # doctest: +SKIP
        ...     {"inputs": [{"name": "features", "shape": [1, 10], "datatype": "FP64",
        ...                  "data": [0.1] * 10}]})

    Args:
        endpoint: ``http://host:port`` (plain) or ``https://host:port`` (TLS).
        model: the model's name on the server.
        version: its version, or None for the server's default.
        metadata: request metadata (the model's headers, credentials included;
            keys are lower-cased, as HTTP/2 requires).
        secrets: strings scrubbed from error messages.
        compression: ``"gzip"`` to compress requests; None to send them as they are.
    """

    __slots__ = (
        "_channel",
        "_compression",
        "_infer",
        "_metadata",
        "_pb2",
        "_ready",
        "_secure",
        "_target",
        "compression",
        "model",
        "secrets",
        "url",
        "version",
    )

    def __init__(
        self,
        endpoint: str,
        model: str,
        version: str | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        compression: str | None = None,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"a gRPC endpoint is http://host:port or https://host:port, got {endpoint!r}"
            )
        self._secure = parts.scheme == "https"
        port = parts.port or (443 if self._secure else 8081)
        self._target = f"{parts.hostname}:{port}"
        self.url = f"grpc{'s' if self._secure else ''}://{self._target}/{model}"
        self.model = model
        self.version = version
        self._metadata = tuple((k.lower(), v) for k, v in (metadata or {}).items())
        self.secrets = tuple(secrets)
        self.compression = compression
        self._channel: grpc.aio.Channel | None = None
        self._infer: Any = None
        self._ready: Any = None
        self._pb2: Any = None
        self._compression: Any = None
        _modules()  # fail at registration, not at the first event, when grpcio is missing

    def _connect(self) -> Any:
        aio, pb2 = _modules()
        import grpc

        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        if self._secure:
            channel = aio.secure_channel(
                self._target, grpc.ssl_channel_credentials(), options=options
            )
        else:
            channel = aio.insecure_channel(self._target, options=options)
        self._channel = channel
        self._pb2 = pb2
        self._compression = grpc.Compression.Gzip if self.compression == "gzip" else None
        self._infer = channel.unary_unary(
            INFER_METHOD,
            request_serializer=pb2.ModelInferRequest.SerializeToString,
            response_deserializer=pb2.ModelInferResponse.FromString,
        )
        self._ready = channel.unary_unary(
            READY_METHOD,
            request_serializer=pb2.ModelReadyRequest.SerializeToString,
            response_deserializer=pb2.ModelReadyResponse.FromString,
        )
        return self._infer

    async def post(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """One ``ModelInfer`` call for a V2 request in JSON form; the answer in JSON form.

        Raises:
            InvalidInput: a value does not fit its tensor's datatype, or a
                parameter has no protobuf form.
            ProviderError: the call failed (see the module docstring for which).
        """
        import grpc

        infer = self._infer or self._connect()
        request = self._request(body)
        try:
            response = await infer(
                request,
                metadata=self._metadata or None,
                compression=self._compression,
            )
        except grpc.aio.AioRpcError as exc:
            raise grpc_error(exc, self.url, self.secrets) from None
        return _answer(response, self.url)

    async def ready(self) -> None:
        """Check that the server serves this model (``ModelReady``), as the REST route does.

        Raises:
            ModelNotFound: the server answers, but has no such model or version.
            EndpointNotReady: the model is known but not ready (still loading).
            TransportError: the server is not reachable.
        """
        import grpc

        if self._ready is None:
            self._connect()
        request = self._pb2.ModelReadyRequest(name=self.model, version=self.version or "")
        try:
            answer = await self._ready(request, metadata=self._metadata or None)
        except grpc.aio.AioRpcError as exc:
            error = grpc_error(exc, self.url, self.secrets)
            # MLServer answers ModelReady for an unknown model with UNKNOWN
            # ("Unexpected <class 'mlserver.errors.ModelNotFound'>: ... not found").
            if (isinstance(error, ClientError) and error.status == 404) or (
                isinstance(error, ServerError) and "not found" in str(error).lower()
            ):
                raise ModelNotFound(
                    f"{error}; remote_name= and version= must name a model the server "
                    "loaded, and endpoint= must be its gRPC port (MLServer: 8081)"
                ) from None
            raise error from None
        if not answer.ready:
            raise EndpointNotReady(f"{self.url}: the model is not ready yet")

    def _request(self, body: Mapping[str, Any]) -> oip_v2_pb2.ModelInferRequest:
        pb2 = self._pb2
        request: oip_v2_pb2.ModelInferRequest = pb2.ModelInferRequest(
            model_name=self.model, model_version=self.version or ""
        )
        for tensor in body["inputs"]:
            name, datatype = tensor["name"], tensor["datatype"]
            request.inputs.add(name=name, datatype=datatype, shape=tensor["shape"])
            request.raw_input_contents.append(to_raw(datatype, tensor["data"], name))
        for output in body.get("outputs") or ():
            request.outputs.add(name=output["name"])
        for key, value in (body.get("parameters") or {}).items():
            _parameter(request.parameters[key], key, value)
        return request

    async def aclose(self) -> None:
        """Close the channel; a later request opens a new one."""
        channel, self._channel, self._infer = self._channel, None, None
        if channel is not None:
            await channel.close()

    def __repr__(self) -> str:
        return f"OipGrpcEndpoint({self.url!r}, compression={self.compression!r})"


def _parameter(target: Any, key: str, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    elif isinstance(value, str):
        target.string_param = value
    else:
        raise InvalidInput(
            f"parameters.{key}",
            f"gRPC parameters are booleans, integers or strings, got {type(value).__name__}",
        )


def _answer(response: oip_v2_pb2.ModelInferResponse, url: str) -> dict[str, Any]:
    raw = response.raw_output_contents
    if raw and len(raw) != len(response.outputs):
        raise ResponseDecodeError(
            f"{url}: {len(raw)} raw output contents for {len(response.outputs)} outputs"
        )
    outputs = []
    for i, output in enumerate(response.outputs):
        datatype = output.datatype
        if raw:
            data = from_raw(datatype, raw[i], url)
        else:
            field = _CONTENTS_FIELD.get(datatype)
            if field is None:
                raise ResponseDecodeError(
                    f"{url}: output {output.name!r} of datatype {datatype!r} has no contents"
                )
            data = list(getattr(output.contents, field))
            if datatype == "BYTES":
                data = [_text(b) for b in data]
        outputs.append(
            {"name": output.name, "datatype": datatype, "shape": list(output.shape), "data": data}
        )
    answer: dict[str, Any] = {"model_name": response.model_name, "outputs": outputs}
    if response.model_version:
        answer["model_version"] = response.model_version
    return answer


def _text(item: bytes) -> str | bytes:
    try:
        return item.decode()
    except UnicodeDecodeError:
        return item


def grpc_error(exc: grpc.aio.AioRpcError, url: str, secrets: Iterable[str] = ()) -> ProviderError:
    """The package's error for a failed gRPC call; the one place status codes are read.

    Example:
        >>> import grpc
        >>> error = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, None, None, "refused")
        >>> type(grpc_error(error, "grpc://127.0.0.1:1/m")).__name__
        'TransportError'
    """
    import grpc

    code = exc.code()
    message = f"{url}: {code.name}: {scrub(str(exc.details() or ''), secrets)}"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return TransportError(message)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return InferenceTimeout(message)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RateLimited(message)
    if code in (
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.ABORTED,
    ):
        return ServerError(message)
    status = {
        grpc.StatusCode.NOT_FOUND: 404,
        grpc.StatusCode.UNIMPLEMENTED: 404,
        grpc.StatusCode.UNAUTHENTICATED: 401,
        grpc.StatusCode.PERMISSION_DENIED: 403,
    }.get(code, 400)
    return ClientError(message, status=status)
