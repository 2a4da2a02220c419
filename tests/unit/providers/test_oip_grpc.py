"""The Open Inference Protocol over gRPC, against an in-process gRPC server.

The server here is a test double for what MLServer cannot be made to do on
command (answer RESOURCE_EXHAUSTED, answer in ``contents`` instead of raw
bytes); the real MLServer is in tests/integration/test_wire.py.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")

from benchmarks.relay import CountingRelay  # noqa: E402
from faust_inference.exceptions import (  # noqa: E402
    ClientError,
    ConfigurationError,
    InferenceTimeout,
    RateLimited,
    ServerError,
    TransportError,
)
from faust_inference.providers import oip_v2_pb2 as pb2  # noqa: E402
from faust_inference.providers.oip_grpc import INFER_METHOD, OipGrpcEndpoint  # noqa: E402

Handler = Callable[[Any, Any], Any]


class FakeGrpcServer:
    """Answers ModelInfer with ``handler(request, context)``; records requests and metadata."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.metadata: list[dict[str, str]] = []
        self.handler: Handler = _sum_rows

    async def _infer(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        return await _maybe_await(self.handler(request, context))


async def _maybe_await(value: Any) -> Any:
    if hasattr(value, "__await__"):
        return await value
    return value


def _sum_rows(request: Any, context: Any) -> Any:
    """predict = the sum of each row, answered as raw bytes (as MLServer does)."""
    tensor = request.inputs[0]
    rows, width = tensor.shape
    values = struct.unpack(f"<{rows * width}d", request.raw_input_contents[0])
    sums = [sum(values[r * width : (r + 1) * width]) for r in range(rows)]
    response = pb2.ModelInferResponse(model_name=request.model_name, model_version="7")
    response.outputs.add(name="predict", datatype="FP64", shape=[rows])
    response.raw_output_contents.append(struct.pack(f"<{rows}d", *sums))
    return response


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeGrpcServer, str]]:
    fake = FakeGrpcServer()
    service, _, method = INFER_METHOD.strip("/").partition("/")
    handler = grpc.method_handlers_generic_handler(
        service,
        {
            method: grpc.unary_unary_rpc_method_handler(
                fake._infer,
                request_deserializer=pb2.ModelInferRequest.FromString,
                response_serializer=pb2.ModelInferResponse.SerializeToString,
            )
        },
    )
    srv = grpc.aio.server()
    srv.add_generic_rpc_handlers((handler,))
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await srv.stop(None)


def _body(rows: int = 2, width: int = 3) -> dict[str, Any]:
    data = [float(i) for i in range(rows * width)]
    return {"inputs": [{"name": "x", "shape": [rows, width], "datatype": "FP64", "data": data}]}


async def test_request_carries_raw_tensors_and_answer_comes_back_in_json_form(
    server: tuple[FakeGrpcServer, str],
) -> None:
    fake, url = server
    endpoint = OipGrpcEndpoint(url, "fraud", "v1", metadata={"X-Team": "risk"})
    try:
        answer = await endpoint.post(
            {**_body(), "outputs": [{"name": "predict"}], "parameters": {"trace": True, "n": 2}}
        )
    finally:
        await endpoint.aclose()
    request = fake.requests[0]
    assert (request.model_name, request.model_version) == ("fraud", "v1")
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [("x", "FP64", [2, 3])]
    assert [o.name for o in request.outputs] == ["predict"]
    assert request.parameters["trace"].bool_param is True
    assert request.parameters["n"].int64_param == 2
    assert fake.metadata[0]["x-team"] == "risk"
    assert answer == {
        "model_name": "fraud",
        "model_version": "7",
        "outputs": [{"name": "predict", "datatype": "FP64", "shape": [2], "data": [3.0, 12.0]}],
    }


async def test_answers_in_typed_contents_are_read_too(server: tuple[FakeGrpcServer, str]) -> None:
    fake, url = server

    def contents(request: Any, context: Any) -> Any:
        response = pb2.ModelInferResponse(model_name="m")
        out = response.outputs.add(name="label", datatype="BYTES", shape=[2])
        out.contents.bytes_contents.extend([b"fraud", b"ok"])
        out = response.outputs.add(name="score", datatype="FP32", shape=[2])
        out.contents.fp32_contents.extend([0.5, 0.25])
        return response

    fake.handler = contents
    endpoint = OipGrpcEndpoint(url, "m")
    try:
        answer = await endpoint.post(_body())
    finally:
        await endpoint.aclose()
    assert [o["data"] for o in answer["outputs"]] == [["fraud", "ok"], [0.5, 0.25]]
    assert "model_version" not in answer


@pytest.mark.parametrize(
    ("code", "error", "status"),
    [
        ("RESOURCE_EXHAUSTED", RateLimited, 429),
        ("INTERNAL", ServerError, 500),
        ("UNKNOWN", ServerError, 500),
        ("INVALID_ARGUMENT", ClientError, 400),
        ("NOT_FOUND", ClientError, 404),
        ("UNAUTHENTICATED", ClientError, 401),
        ("UNAVAILABLE", TransportError, None),
        ("DEADLINE_EXCEEDED", InferenceTimeout, None),
    ],
)
async def test_status_codes_become_the_package_errors(
    server: tuple[FakeGrpcServer, str], code: str, error: type[Exception], status: int | None
) -> None:
    fake, url = server

    async def fail(request: Any, context: Any) -> Any:
        await context.abort(getattr(grpc.StatusCode, code), "token sk-abcdef123456 rejected")

    fake.handler = fail
    endpoint = OipGrpcEndpoint(url, "m", secrets=("sk-abcdef123456",))
    try:
        with pytest.raises(error) as info:
            await endpoint.post(_body())
    finally:
        await endpoint.aclose()
    assert type(info.value) is error
    assert code in str(info.value)
    assert "sk-abcdef123456" not in str(info.value)
    if status is not None:
        assert info.value.status == status  # type: ignore[attr-defined]


async def test_gzip_compresses_what_goes_on_the_wire(server: tuple[FakeGrpcServer, str]) -> None:
    _, url = server
    port = int(url.rsplit(":", 1)[1])
    zeros = {"inputs": [{"name": "x", "shape": [4, 512], "datatype": "FP64", "data": [0.0] * 2048}]}
    sent = {}
    for compression in (None, "gzip"):
        async with CountingRelay("127.0.0.1", port) as relay:
            endpoint = OipGrpcEndpoint(
                f"http://127.0.0.1:{relay.port}", "m", compression=compression
            )
            try:
                answer = await endpoint.post(zeros)
            finally:
                await endpoint.aclose()
            sent[compression] = relay.sent
        assert answer["outputs"][0]["data"] == [0.0] * 4
    assert sent[None] > 16 * 1024  # 2,048 doubles, raw
    assert sent["gzip"] < sent[None] / 4


async def test_no_server_is_a_transport_error() -> None:
    endpoint = OipGrpcEndpoint("http://127.0.0.1:9", "m")
    try:
        with pytest.raises(TransportError, match="UNAVAILABLE"):
            await endpoint.post(_body())
    finally:
        await endpoint.aclose()


def test_endpoint_must_be_an_http_url() -> None:
    with pytest.raises(ConfigurationError, match="http://host:port"):
        OipGrpcEndpoint("127.0.0.1:8081", "m")
    assert OipGrpcEndpoint("https://models.example:443", "m").url == "grpcs://models.example:443/m"
