"""The binary tensor data extension and gzip over REST.

Codec tests check the bytes against the protocol's layout written out by
hand; the endpoint tests run against the fake endpoint (a test double, whose
binary decoder is written apart from ours), because MLServer's REST server
does not speak the binary extension (tests/integration/test_wire.py shows
its answer).
"""

from __future__ import annotations

import random
import struct

import orjson
import pytest

from devtools.fake_endpoint import FakeEndpoint
from faust_inference.exceptions import ClientError, InvalidInput, ResponseDecodeError
from faust_inference.providers import Endpoint, TransportPool
from faust_inference.providers.oip_binary import (
    GZIP_MIN_BYTES,
    HEADER_LENGTH,
    OipRestEndpoint,
    decode_response,
    encode_request,
    from_raw,
    to_raw,
)


def _request(rows: int, width: int, datatype: str = "FP64") -> dict[str, object]:
    # Full-precision values, as features are: 0.1 would be 3 characters of JSON.
    rng = random.Random(rows * width)
    data = [rng.random() for _ in range(rows * width)]
    return {"inputs": [{"name": "x", "shape": [rows, width], "datatype": datatype, "data": data}]}


@pytest.mark.parametrize(
    ("datatype", "values", "raw"),
    [
        ("FP64", [1.5, -2.0], struct.pack("<2d", 1.5, -2.0)),
        ("FP32", [0.5], struct.pack("<f", 0.5)),
        ("INT64", [1, -1], struct.pack("<2q", 1, -1)),
        ("INT32", [7], b"\x07\x00\x00\x00"),
        ("UINT8", [255], b"\xff"),
        ("BOOL", [True, False], b"\x01\x00"),
        ("BYTES", ["ab", "é"], b"\x02\x00\x00\x00ab\x02\x00\x00\x00\xc3\xa9"),
    ],
)
def test_raw_layout_is_little_endian_and_round_trips(
    datatype: str, values: list[object], raw: bytes
) -> None:
    assert to_raw(datatype, values) == raw
    assert from_raw(datatype, raw) == values


def test_a_value_that_does_not_fit_names_the_tensor() -> None:
    with pytest.raises(InvalidInput, match="features.*INT64"):
        to_raw("INT64", [1.5], "features")


def test_request_moves_data_behind_the_json_header() -> None:
    body, headers = encode_request(_request(2, 3))
    split = int(headers[HEADER_LENGTH])
    header = orjson.loads(body[:split])
    tensor = header["inputs"][0]
    assert "data" not in tensor
    assert tensor["parameters"]["binary_data_size"] == 2 * 3 * 8
    assert header["parameters"] == {"binary_data_output": True}
    assert struct.unpack("<6d", body[split:]) == tuple(_request(2, 3)["inputs"][0]["data"])  # type: ignore[index]


def test_named_outputs_are_each_asked_for_in_binary() -> None:
    request = {**_request(1, 2), "outputs": [{"name": "predict_proba"}]}
    body, headers = encode_request(request)
    header = orjson.loads(body[: int(headers[HEADER_LENGTH])])
    assert header["outputs"] == [{"name": "predict_proba", "parameters": {"binary_data": True}}]
    assert "parameters" not in header


def test_binary_answer_is_decoded_and_a_json_answer_passes_through() -> None:
    head = orjson.dumps(
        {
            "outputs": [
                {
                    "name": "p",
                    "datatype": "FP32",
                    "shape": [2],
                    "parameters": {"binary_data_size": 8},
                },
                {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["x"]},
            ]
        }
    )
    answer = decode_response(head + struct.pack("<2f", 0.25, 0.75), str(len(head)))
    assert answer["outputs"][0]["data"] == [0.25, 0.75]
    assert answer["outputs"][0]["parameters"] == {}
    assert answer["outputs"][1]["data"] == ["x"]
    assert decode_response(b'{"outputs": []}', None) == {"outputs": []}


def test_a_cut_off_binary_answer_is_a_decode_error() -> None:
    head = orjson.dumps(
        {
            "outputs": [
                {
                    "name": "p",
                    "datatype": "FP64",
                    "shape": [2],
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    )
    with pytest.raises(ResponseDecodeError, match="cut off"):
        decode_response(head + b"\x00" * 8, str(len(head)))


async def test_binary_round_trip_through_the_fake_endpoint() -> None:
    async with FakeEndpoint() as ep:
        transports = TransportPool()
        try:
            endpoint = Endpoint(f"{ep.url}/v2/models/m/infer", transports)
            binary = await OipRestEndpoint(endpoint, binary=True).post(_request(4, 256))
            plain = await OipRestEndpoint(endpoint).post(_request(4, 256))
        finally:
            await transports.aclose()
        sent = ep.stats.recent
    assert binary["outputs"][0]["data"] == plain["outputs"][0]["data"]
    assert binary["outputs"][0]["shape"] == [4, 2]
    assert HEADER_LENGTH in sent[0].headers
    assert len(sent[0].body) < len(sent[1].body) / 2  # 8 bytes a float against ~20 of text


async def test_gzip_compresses_large_bodies_only() -> None:
    async with FakeEndpoint() as ep:
        transports = TransportPool()
        try:
            endpoint = OipRestEndpoint(
                Endpoint(f"{ep.url}/v2/models/m/infer", transports), compression="gzip"
            )
            big = await endpoint.post(_request(16, 256))
            await endpoint.post(_request(1, 2))
        finally:
            await transports.aclose()
        sent = ep.stats.recent
    # The fake records the body as the server read it: decompressed by aiohttp.
    assert sent[0].headers.get("Content-Encoding") == "gzip"
    assert int(sent[0].headers["Content-Length"]) < len(sent[0].body)
    assert orjson.loads(sent[0].body) == _request(16, 256)
    assert len(orjson.dumps(_request(1, 2))) < GZIP_MIN_BYTES
    assert "Content-Encoding" not in sent[1].headers
    assert len(big["outputs"][0]["data"]) == 32


async def test_a_server_refusing_gzip_gets_plain_requests_from_then_on() -> None:
    async with FakeEndpoint() as ep:
        ep.script(415)
        transports = TransportPool()
        try:
            endpoint = OipRestEndpoint(
                Endpoint(f"{ep.url}/v2/models/m/infer", transports), compression="gzip"
            )
            answer = await endpoint.post(_request(16, 256))
        finally:
            await transports.aclose()
        sent = ep.stats.recent
    assert answer["outputs"][0]["shape"] == [16, 2]
    assert [r.headers.get("Content-Encoding") for r in sent] == ["gzip", None]
    assert endpoint.compression is None


async def test_a_server_without_the_extension_is_named_in_the_error() -> None:
    async with FakeEndpoint() as ep:
        ep.script(400)
        transports = TransportPool()
        try:
            endpoint = OipRestEndpoint(
                Endpoint(f"{ep.url}/v2/models/m/infer", transports), binary=True
            )
            with pytest.raises(ClientError, match="binary=False"):
                await endpoint.post(_request(1, 2))
        finally:
            await transports.aclose()
