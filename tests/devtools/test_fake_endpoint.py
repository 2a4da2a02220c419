"""Tests of the fake model endpoint (devtools.fake_endpoint), a test double."""

from __future__ import annotations

import asyncio
import base64
import math
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from devtools.fake_endpoint import EndpointConfig, FakeEndpoint, Fault
from devtools.fake_endpoint.protocols import embedding_vector

REPO_ROOT = Path(__file__).resolve().parents[2]
CHAT = {
    "model": "gpt-test",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
    ],
}
OIP_OK = {
    "id": "req-1",
    "inputs": [
        {"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [[0.5, 1.0, -0.5], [-1, -2, 0]]}
    ],
}


@pytest_asyncio.fixture
async def ep() -> AsyncIterator[FakeEndpoint]:
    async with FakeEndpoint() as endpoint:
        yield endpoint


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


async def post(
    session: aiohttp.ClientSession, url: str, body: Any, **kw: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with session.post(url, json=body, **kw) as resp:
        raw = await resp.read()
        return resp.status, orjson.loads(raw) if raw else None, resp


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        return resp.status, orjson.loads(await resp.read())


# ---------------------------------------------------------------- happy paths
@pytest.mark.asyncio
async def test_chat_completion_has_openai_shape(
    ep: FakeEndpoint, session: aiohttp.ClientSession
) -> None:
    status, body, _ = await post(session, ep.url + "/v1/chat/completions", CHAT)
    assert status == 200
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-test"
    assert isinstance(body["created"], int)
    assert body["choices"] == [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "echo: hello there"},
        }
    ]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert ep.stats.by_route == {"/v1/chat/completions": 1}


@pytest.mark.asyncio
async def test_embeddings_string_and_list(ep: FakeEndpoint, session: aiohttp.ClientSession) -> None:
    url = ep.url + "/v1/embeddings"
    _, one, _ = await post(session, url, {"model": "e", "input": "abc"})
    status, many, _ = await post(session, url, {"model": "e", "input": ["abc", "xyz"]})
    assert status == 200
    assert many["object"] == "list" and many["model"] == "e" and "usage" in many
    assert [d["index"] for d in many["data"]] == [0, 1]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 8 for d in many["data"])
    assert one["data"][0]["embedding"] == many["data"][0]["embedding"]  # deterministic
    assert many["data"][0]["embedding"] != many["data"][1]["embedding"]
    assert math.isclose(sum(x * x for x in one["data"][0]["embedding"]), 1.0)
    assert ep.stats.rows == 3


@pytest.mark.asyncio
async def test_embeddings_dimension_and_base64(session: aiohttp.ClientSession) -> None:
    async with FakeEndpoint(dim=4) as ep:
        url = ep.url + "/v1/embeddings"
        _, body, _ = await post(session, url, {"model": "e", "input": "q"})
        assert len(body["data"][0]["embedding"]) == 4
        _, b64, _ = await post(
            session,
            url,
            {"model": "e", "input": "q", "dimensions": 16, "encoding_format": "base64"},
        )
        floats = struct.unpack("<16f", base64.b64decode(b64["data"][0]["embedding"]))
        assert floats == pytest.approx(embedding_vector("q", 16), abs=1e-6)


@pytest.mark.asyncio
async def test_models_and_oip_metadata_routes(
    ep: FakeEndpoint, session: aiohttp.ClientSession
) -> None:
    assert await get(session, ep.url + "/v1/models") == (
        200,
        {
            "object": "list",
            "data": [
                {"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake-endpoint"}
            ],
        },
    )
    assert await get(session, ep.url + "/v2/health/ready") == (200, {"ready": True})
    assert await get(session, ep.url + "/v2/models/iris/ready") == (
        200,
        {"name": "iris", "ready": True},
    )
    status, meta = await get(session, ep.url + "/v2/models/iris")
    assert status == 200 and meta["name"] == "iris" and meta["versions"] == ["1"]


@pytest.mark.asyncio
async def test_oip_infer_returns_predict_proba(
    ep: FakeEndpoint, session: aiohttp.ClientSession
) -> None:
    status, body, _ = await post(session, ep.url + "/v2/models/iris/infer", OIP_OK)
    assert status == 200
    assert (body["model_name"], body["model_version"], body["id"]) == ("iris", "1", "req-1")
    [out] = body["outputs"]
    assert (out["name"], out["shape"], out["datatype"]) == ("predict_proba", [2, 2], "FP64")
    p1_row0, p1_row1 = 1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(3.0))
    assert out["data"] == pytest.approx([1 - p1_row0, p1_row0, 1 - p1_row1, p1_row1])
    status, body, _ = await post(session, ep.url + "/v2/models/iris/versions/7/infer", OIP_OK)
    assert status == 200 and body["model_version"] == "7"
    assert ep.stats.rows == 4


@pytest.mark.asyncio
async def test_oip_echoes_non_tabular_inputs(
    ep: FakeEndpoint, session: aiohttp.ClientSession
) -> None:
    req = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}
    status, body, _ = await post(session, ep.url + "/v2/models/m/infer", req)
    assert status == 200
    assert body["outputs"] == req["inputs"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("request_body", "message_part"),
    [
        ({}, "'inputs'"),
        ({"inputs": [{"shape": [1, 1], "datatype": "FP64", "data": [1.0]}]}, "name"),
        (
            {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3]}]},
            "3 elements",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP128", "data": [1.0]}]},
            "datatype",
        ),
        ({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": ["a"]}]}, "FP32"),
        ({"inputs": [{"name": "x", "shape": "1", "datatype": "FP32", "data": [1.0]}]}, "shape"),
    ],
)
async def test_oip_invalid_input_is_400(
    ep: FakeEndpoint, session: aiohttp.ClientSession, request_body: Any, message_part: str
) -> None:
    status, body, _ = await post(session, ep.url + "/v2/models/m/infer", request_body)
    assert status == 400
    assert set(body) == {"error"} and message_part in body["error"]


@pytest.mark.asyncio
async def test_invalid_json_is_400(ep: FakeEndpoint, session: aiohttp.ClientSession) -> None:
    async with session.post(ep.url + "/v2/models/m/infer", data=b"{nope") as resp:
        assert resp.status == 400
        assert "not valid JSON" in (await resp.json())["error"]


@pytest.mark.asyncio
async def test_predict_and_echo(ep: FakeEndpoint, session: aiohttp.ClientSession) -> None:
    status, body, _ = await post(
        session, ep.url + "/predict", {"inputs": [1, 2.5, "abcd", [1, "xy"], None]}
    )
    assert (status, body) == (200, {"outputs": [2, 5.0, 4, [2, 2], None]})
    status, body, _ = await post(session, ep.url + "/predict", {"inputs": "nope"})
    assert status == 400 and "inputs" in body["error"]
    async with session.post(
        ep.url + "/echo",
        data=b"raw \x00 bytes",
        headers={"Content-Type": "application/octet-stream"},
    ) as resp:
        assert resp.status == 200
        assert await resp.read() == b"raw \x00 bytes"
        assert resp.headers["Content-Type"] == "application/octet-stream"


# --------------------------------------------------------------------- faults
@pytest.mark.asyncio
async def test_script_sequence_then_normal(
    ep: FakeEndpoint, session: aiohttp.ClientSession
) -> None:
    ep.script(429, Fault.http(503, retry_after=2.5), 500)
    assert ep.pending_script == 3
    url = ep.url + "/v1/chat/completions"
    status, body, resp = await post(session, url, CHAT)
    assert status == 429 and resp.headers["Retry-After"] == "1"
    assert body["error"]["type"] == "rate_limit_exceeded"  # OpenAI error shape
    status, _, resp = await post(session, url, CHAT)
    assert status == 503 and resp.headers["Retry-After"] == "3"  # whole seconds, rounded up
    status, _, resp = await post(session, url, CHAT)
    assert status == 500 and "Retry-After" not in resp.headers
    status, _, _ = await post(session, url, CHAT)
    assert status == 200 and ep.pending_script == 0
    assert ep.stats.by_status == {429: 1, 503: 1, 500: 1, 200: 1}


@pytest.mark.asyncio
async def test_malformed_body_is_not_json(ep: FakeEndpoint, session: aiohttp.ClientSession) -> None:
    ep.script("malformed")
    async with session.post(ep.url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 200
        raw = await resp.read()
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


@pytest.mark.asyncio
async def test_reset_drops_the_connection(ep: FakeEndpoint, session: aiohttp.ClientSession) -> None:
    ep.script("reset")
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await post(session, ep.url + "/predict", {"inputs": [1]})
    status, _, _ = await post(session, ep.url + "/predict", {"inputs": [1]})
    assert status == 200
    assert ep.stats.faults == {"reset": 1}


@pytest.mark.asyncio
async def test_stall_outlasts_client_timeout_and_stop_is_quick(
    session: aiohttp.ClientSession,
) -> None:
    ep = FakeEndpoint()
    await ep.start()
    try:
        ep.script("stall")
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await post(
                session,
                ep.url + "/predict",
                {"inputs": [1]},
                timeout=aiohttp.ClientTimeout(total=0.3),
            )
        assert time.monotonic() - started >= 0.29
        for _ in range(50):  # the handler is cancelled when the client gives up
            if ep.stats.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert ep.stats.in_flight == 0
        ep.script("stall")
        pending = asyncio.ensure_future(post(session, ep.url + "/predict", {"inputs": [1]}))
        await asyncio.sleep(0.1)
        assert ep.stats.in_flight == 1
    finally:
        started = time.monotonic()
        await ep.stop()
    assert time.monotonic() - started < 2.0  # stalled request does not hold up shutdown
    with pytest.raises(aiohttp.ClientConnectionError):
        await pending


@pytest.mark.asyncio
async def test_stall_is_bounded_by_stall_max(session: aiohttp.ClientSession) -> None:
    async with FakeEndpoint(stall_max=0.2) as ep:
        ep.script("stall")
        started = time.monotonic()
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(session, ep.url + "/predict", {"inputs": [1]})
        assert 0.19 <= time.monotonic() - started < 2.0


@pytest.mark.asyncio
async def test_rate_limit_answers_429_above_rate(session: aiohttp.ClientSession) -> None:
    # A slow refill keeps the count exact even if a loaded box spreads the burst out.
    async with FakeEndpoint(rate_limit_rps=0.5, rate_limit_burst=5) as ep:
        results = await asyncio.gather(
            *(post(session, ep.url + "/predict", {"inputs": [i]}) for i in range(20))
        )
        statuses = [status for status, _, _ in results]
        assert 5 <= statuses.count(200) <= 6
        assert statuses.count(429) == 20 - statuses.count(200)
        limited = next(resp for status, _, resp in results if status == 429)
        assert int(limited.headers["Retry-After"]) >= 1
        assert ep.stats.faults == {"rate_limited": statuses.count(429)}
        ep.configure(rate_limit_rps=None)  # flip mid-test
        status, _, _ = await post(session, ep.url + "/predict", {"inputs": [1]})
        assert status == 200


@pytest.mark.asyncio
async def test_peak_in_flight_is_counted() -> None:
    async with FakeEndpoint(latency=0.05) as ep:
        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(connector=connector) as wide:

            async def burst() -> list[int]:
                results = await asyncio.gather(
                    *(post(wide, ep.url + "/predict", {"inputs": [i]}) for i in range(50))
                )
                return [status for status, _, _ in results]

            await burst()  # opens the 50 connections, so the measured burst is not connect-bound
            ep.reset_stats()
            assert await burst() == [200] * 50
        stats = ep.stats
        assert stats.peak_in_flight >= 40
        assert stats.in_flight == 0 and stats.total == 50 and stats.rows == 50


@pytest.mark.asyncio
async def test_error_rate_is_deterministic_per_seed(session: aiohttp.ClientSession) -> None:
    async def statuses(seed: int) -> list[int]:
        async with FakeEndpoint(error_rate=0.5, seed=seed) as ep:
            return [
                (await post(session, ep.url + "/predict", {"inputs": [1]}))[0] for _ in range(20)
            ]

    first, again, other = await statuses(1), await statuses(1), await statuses(2)
    assert first == again
    assert set(first) == {200, 500} and first != other


@pytest.mark.asyncio
async def test_max_batch_and_config_flip(ep: FakeEndpoint, session: aiohttp.ClientSession) -> None:
    ep.configure(max_batch=2)
    status, body, _ = await post(session, ep.url + "/predict", {"inputs": [1, 2, 3]})
    assert status == 400 and "max_batch" in body["error"]
    assert (await post(session, ep.url + "/predict", {"inputs": [1, 2]}))[0] == 200
    ep.config = EndpointConfig(error_rate=1.0)
    assert (await post(session, ep.url + "/predict", {"inputs": [1, 2, 3]}))[0] == 500
    ep.configure(error_rate=0.0, latency=0.1)
    started = time.monotonic()
    assert (await post(session, ep.url + "/predict", {"inputs": [1, 2, 3]}))[0] == 200
    assert time.monotonic() - started >= 0.1


# --------------------------------------------------------- stats & recording
@pytest.mark.asyncio
async def test_recorded_requests_allow_format_assertions(
    ep: FakeEndpoint, session: aiohttp.ClientSession
) -> None:
    await post(
        session,
        ep.url + "/v1/chat/completions?x=1",
        CHAT,
        headers={"Authorization": "Bearer sk-test"},
    )
    [rec] = ep.stats.recent
    assert (rec.method, rec.path, rec.query) == ("POST", "/v1/chat/completions", "x=1")
    assert rec.headers["authorization"] == "Bearer sk-test"  # case-insensitive
    assert rec.json() == CHAT
    ep.configure(record_limit=2)
    for i in range(3):
        await post(session, ep.url + "/predict", {"inputs": [i]})
    assert [r.json()["inputs"] for r in ep.stats.recent] == [[1], [2]]


@pytest.mark.asyncio
async def test_stats_and_reset_routes(ep: FakeEndpoint, session: aiohttp.ClientSession) -> None:
    await post(
        session, ep.url + "/predict", {"inputs": [1, 2]}, headers={"Authorization": "Bearer k"}
    )
    status, stats = await get(session, ep.url + "/_stats?recent=1")
    assert status == 200
    assert stats["total"] == 1 and stats["rows"] == 2 and stats["by_status"] == {"200": 1}
    assert stats["recent"][0]["headers"]["Authorization"] == "Bearer k"
    assert (await post(session, ep.url + "/_reset", None))[0] == 200
    assert ep.stats.total == 0 and ep.stats.recent == ()  # control routes are not counted
    await post(session, ep.url + "/predict", {"inputs": [1]})
    ep.reset_stats()
    assert ep.stats.total == 0 and ep.stats.by_route == {}


def test_config_and_script_validation() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        EndpointConfig(error_rate=1.5)
    with pytest.raises(ValueError, match="stall_max"):
        EndpointConfig(stall_max=10_000)
    with pytest.raises(ValueError, match="unknown scripted"):
        FakeEndpoint().script("explode")
    with pytest.raises(RuntimeError, match="not started"):
        _ = FakeEndpoint().url


def test_cli_prints_url_serves_and_prints_stats() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.fake_endpoint",
            "--latency",
            "0",
            "--dim",
            "3",
            "--max-seconds",
            "30",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the CLI flushes it as soon as it listens
        assert line.startswith("FAKE_ENDPOINT_URL=http://127.0.0.1:")
        url = line.strip().split("=", 1)[1]

        async def use() -> Any:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
                _, body, _ = await post(s, url + "/v1/embeddings", {"model": "m", "input": "a"})
                return body

        body = asyncio.run(use())
        assert len(body["data"][0]["embedding"]) == 3
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0
    final = orjson.loads(out.strip().splitlines()[-1])
    assert final["total"] == 1 and final["by_route"] == {"/v1/embeddings": 1}
