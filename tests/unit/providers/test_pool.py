"""The replica pool: balancing, failover, ejection and probing, hedging and its budget.

The replicas here are in-process endpoints whose answers a test scripts
(gates, errors, latencies on a fake clock), so each behaviour is checked
exactly and nothing sleeps; the pool on real servers and a real broker is in
tests/integration/test_pool.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from faust_inference.config import HedgeSettings, ModelSettings, ReplicaHealthSettings
from faust_inference.exceptions import ClientError, RateLimited, ServerError, TransportError
from faust_inference.providers.pool import ReplicaPool, live_pools
from tests.unit.fakes import FakeClock


class Replica:
    """Answers its URL; ``gate`` holds answers back, ``fail`` raises, ``latency`` advances the clock."""

    def __init__(self, url: str, clock: FakeClock | None = None) -> None:
        self.url = url
        self.clock = clock
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail: Callable[[], BaseException | None] = lambda: None
        self.latency = 0.0
        self.closed = False

    async def post(self, body: Any) -> Any:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.clock is not None:
            self.clock.now += self.latency
        error = self.fail()
        if error is not None:
            raise error
        return {"from": self.url, "body": body}

    async def aclose(self) -> None:
        self.closed = True


def _pool(n: int = 3, **health: Any) -> tuple[ReplicaPool[Replica], list[Replica], FakeClock]:
    clock = FakeClock()
    replicas = [Replica(f"http://r{i}:8080", clock) for i in range(n)]
    pool = ReplicaPool(replicas, ReplicaHealthSettings(**health), clock=clock)
    return pool, replicas, clock


async def test_least_in_flight_spreads_concurrent_requests() -> None:
    pool, replicas, _ = _pool(3)
    gate = asyncio.Event()
    for r in replicas:
        r.gate = gate
    calls = [asyncio.create_task(pool.post(i)) for i in range(6)]
    await asyncio.sleep(0)
    assert [r.in_flight for r in pool.replicas] == [2, 2, 2]
    gate.set()
    answers = await asyncio.gather(*calls)
    assert sorted(a["body"] for a in answers) == list(range(6))


async def test_a_busy_replica_gets_the_next_request_last() -> None:
    pool, replicas, _ = _pool(2)
    replicas[0].gate = asyncio.Event()  # r0 holds its requests
    stuck = asyncio.create_task(pool.post("stuck"))
    await asyncio.sleep(0)
    busy = pool.replicas.index(next(r for r in pool.replicas if r.in_flight))
    answers = [await pool.post(i) for i in range(4)]
    assert all(a["from"] != pool.replicas[busy].url for a in answers)
    replicas[0].gate.set()
    await stuck


async def test_a_refused_connection_goes_to_another_replica_at_once() -> None:
    pool, replicas, _ = _pool(2)
    replicas[0].fail = lambda: TransportError("connection refused")
    replicas[1].fail = lambda: None
    answers = [await pool.post(i) for i in range(4)]
    assert all(a["from"] == "http://r1:8080" for a in answers)
    assert pool.replicas[0].failures >= 1


@pytest.mark.parametrize(
    "error",
    [ClientError("bad shape", status=400), ServerError("bad row", status=500)],
    ids=["400", "500"],
)
async def test_an_error_the_request_may_have_caused_is_not_failed_over(error: Exception) -> None:
    pool, replicas, _ = _pool(2)
    for r in replicas:
        r.fail = lambda: error
    with pytest.raises(type(error)):
        await pool.post(1)
    assert sum(r.calls for r in replicas) == 1


async def test_a_replica_that_cannot_serve_now_is_failed_over() -> None:
    pool, replicas, _ = _pool(2)
    replicas[0].fail = lambda: ServerError("unavailable", status=503)
    pool._turn = iter([0] * 10)  # type: ignore[assignment]  # r0 first
    assert (await pool.post(1))["from"] == "http://r1:8080"
    assert [r.calls for r in replicas] == [1, 1]


async def test_consecutive_failures_eject_and_a_probe_brings_back() -> None:
    pool, replicas, clock = _pool(3, failures=2, eject_time=10)
    broken = [True]
    replicas[0].fail = lambda: ServerError("down", status=503) if broken[0] else None
    for _ in range(12):
        with contextlib.suppress(ServerError):
            await pool.post(0)
    r0 = pool.replicas[0]
    assert r0.state == "ejected" and r0.ejections == 1
    calls = replicas[0].calls
    for _ in range(6):
        await pool.post(0)
    assert replicas[0].calls == calls  # ejected: no traffic
    clock.now += 10
    broken[0] = False
    for _ in range(6):
        await pool.post(0)
    assert r0.state == "up"
    assert replicas[0].calls > calls


async def test_a_failed_probe_ejects_for_twice_as_long() -> None:
    pool, replicas, clock = _pool(3, failures=1, eject_time=10)
    replicas[0].fail = lambda: ServerError("down", status=503)
    for _ in range(20):
        with contextlib.suppress(ServerError):
            await pool.post(0)
        if pool.replicas[0].state != "up":
            break
    clock.now += 10
    for _ in range(20):
        with contextlib.suppress(ServerError):
            await pool.post(0)
        if pool.replicas[0].ejections == 2:
            break
    assert pool.replicas[0].ejected_until == pytest.approx(clock.now + 20)


async def test_a_latency_outlier_is_ejected() -> None:
    pool, replicas, _ = _pool(3, outlier_factor=3.0)
    replicas[0].latency = 0.5
    replicas[1].latency = replicas[2].latency = 0.02
    for i in range(60):
        await pool.post(i)
    assert [r.state for r in pool.replicas] == ["ejected", "up", "up"]
    assert pool.replicas[1].latency == pytest.approx(0.02)


async def test_no_more_than_max_ejected_are_out_at_once() -> None:
    pool, replicas, _ = _pool(2, failures=1, max_ejected=0.5)
    for r in replicas:
        r.fail = lambda: ServerError("down", status=503)
    for _ in range(8):
        with pytest.raises(ServerError):
            await pool.post(0)
    assert sorted(r.state for r in pool.replicas) == ["ejected", "up"]


async def test_a_429_rests_that_replica_until_retry_after() -> None:
    pool, replicas, clock = _pool(2)
    limited = [True]
    replicas[0].fail = lambda: RateLimited("slow down", retry_after=5.0) if limited[0] else None
    answers = [await pool.post(i) for i in range(6)]
    assert all(a["from"] == "http://r1:8080" for a in answers)  # failed over at once
    assert replicas[0].calls == 1
    limited[0] = False
    clock.now += 5
    answers = [await pool.post(i) for i in range(6)]
    assert {a["from"] for a in answers} == {"http://r0:8080", "http://r1:8080"}


async def test_every_replica_limited_raises_the_429() -> None:
    pool, replicas, _ = _pool(2)
    for r in replicas:
        r.fail = lambda: RateLimited("slow down", retry_after=1.0)
    with pytest.raises(RateLimited):
        await pool.post(0)
    assert [r.calls for r in replicas] == [1, 1]


def _hedged(n: int, **hedge: Any) -> tuple[ReplicaPool[Replica], list[Replica], FakeClock]:
    clock = FakeClock()
    replicas = [Replica(f"http://r{i}:8080", clock) for i in range(n)]
    pool = ReplicaPool(replicas, ReplicaHealthSettings(), hedge=HedgeSettings(**hedge), clock=clock)
    return pool, replicas, clock


async def test_a_stalled_call_is_hedged_on_another_replica_and_cancelled() -> None:
    pool, replicas, clock = _hedged(2, delay=0.05, budget=1.0)
    replicas[0].gate = asyncio.Event()  # r0 never answers
    pool._turn = iter([0] * 10)  # type: ignore[assignment]  # the first call goes to r0
    answer = await pool.post("x")
    assert answer["from"] == "http://r1:8080"
    assert clock.sleeps == [0.05]
    assert (pool.hedges.sent, pool.hedges.won) == (1, 1)
    assert pool.replicas[0].cancelled == 1 and pool.replicas[0].in_flight == 0


async def test_a_fast_answer_sends_no_copy() -> None:
    pool, replicas, _ = _hedged(2, delay=0.05, budget=1.0)
    for i in range(5):
        await pool.post(i)
    assert pool.hedges.sent == 0
    assert sum(r.calls for r in replicas) == 5


async def test_with_one_replica_the_copy_goes_to_the_same_one() -> None:
    pool, replicas, _ = _hedged(1, delay=0.01, budget=1.0)
    first = asyncio.Event()
    calls = []

    async def post(body: Any) -> Any:
        calls.append(body)
        if len(calls) == 1:
            await first.wait()  # the original stalls; the copy answers
        return {"copy": len(calls)}

    replicas[0].post = post  # type: ignore[method-assign]
    assert await pool.post("x") == {"copy": 2}
    assert pool.hedges.won == 1


async def test_the_budget_caps_copies() -> None:
    pool, replicas, _ = _hedged(2, delay=0.01, budget=0.1)
    for r in replicas:
        r.gate = asyncio.Event()
    calls = [asyncio.create_task(pool.post(i)) for i in range(50)]
    for _ in range(5):
        await asyncio.sleep(0)
    for r in replicas:
        r.gate.set()  # type: ignore[union-attr]
    await asyncio.gather(*calls)
    assert 1 <= pool.hedges.sent <= 0.1 * 50
    assert pool.hedges.sent + pool.hedges.denied == 50


async def test_the_default_delay_waits_for_enough_latencies() -> None:
    pool, replicas, clock = _hedged(2, min_samples=20)
    for r in replicas:
        r.latency = 0.02
    for i in range(19):
        await pool.post(i)
    assert pool.p95 is not None and clock.sleeps == []  # not enough samples: no hedge timer
    await pool.post(19)
    await pool.post(20)
    assert clock.sleeps == [pytest.approx(0.02)]  # the p95 of 20 ms answers


async def test_the_copy_failing_still_leaves_the_original_to_answer() -> None:
    pool, replicas, _ = _hedged(2, delay=0.01, budget=1.0)
    gate = asyncio.Event()
    replicas[0].gate = gate
    replicas[1].fail = lambda: ServerError("down", status=503)
    pool._turn = iter([0] * 10)  # type: ignore[assignment]
    call = asyncio.create_task(pool.post("x"))
    for _ in range(5):
        await asyncio.sleep(0)
    gate.set()
    assert (await call)["from"] == "http://r0:8080"
    assert (pool.hedges.sent, pool.hedges.won) == (1, 0)


async def test_pools_are_listed_for_metrics_until_closed() -> None:
    settings = ModelSettings(name="m", provider="kserve", endpoint=["http://a:1", "http://b:1"])
    replicas = [Replica(u) for u in settings.replica_urls]
    pool = ReplicaPool(replicas, settings.replicas, settings=settings)
    assert pool in list(live_pools())
    await pool.aclose()
    assert pool not in list(live_pools())
    assert all(r.closed for r in replicas)


async def test_metrics_are_labelled_by_replica() -> None:
    from prometheus_client import CollectorRegistry

    from faust_inference.sensors.prometheus import PrometheusObserver

    observer = PrometheusObserver(registry=CollectorRegistry())
    settings = ModelSettings(
        name="fraud", provider="kserve", endpoint=["http://a:1", "http://b:1"], hedge=True
    )
    replicas = [Replica(u) for u in settings.replica_urls]
    replicas[1].fail = lambda: ServerError("down", status=503)
    pool = ReplicaPool(replicas, settings.replicas, hedge=settings.hedge, settings=settings)
    for i in range(4):
        with contextlib.suppress(ServerError):
            await pool.post(i)
    text = observer.render().decode()
    await pool.aclose()
    ok = 'faust_inference_replica_requests_total{model="fraud",outcome="ok",provider="kserve",replica="http://a:1",version=""}'
    failed = 'faust_inference_replica_requests_total{model="fraud",outcome="error",provider="kserve",replica="http://b:1",version=""}'
    assert f"{ok} {float(pool.replicas[0].answers)}" in text
    assert f"{failed} {float(pool.replicas[1].failures)}" in text
    assert pool.replicas[0].answers >= 2 and pool.replicas[1].failures >= 1
    assert (
        'faust_inference_replica_up{model="fraud",provider="kserve",replica="http://a:1",version=""} 1.0'
        in text
    )
    assert (
        'faust_inference_hedges_total{model="fraud",outcome="sent",provider="kserve",version=""} 0.0'
        in text
    )


async def test_kserve_options_choose_the_wire_and_a_list_makes_a_pool() -> None:
    from faust_inference import ConfigurationError, ModelRegistry
    from faust_inference.providers.oip_binary import OipRestEndpoint
    from faust_inference.providers.oip_grpc import OipGrpcEndpoint

    registry = ModelRegistry()
    try:
        urls = ["http://a:8080", "http://b:8080"]
        pooled = registry.register("p", provider="kserve", endpoint=urls, binary=True)
        grpc = registry.register("g", provider="kserve", endpoint="http://a:8081", protocol="grpc")
        hedged = registry.register("h", provider="kserve", endpoint="http://a:8080", hedge=True)
        plain = registry.register("j", provider="kserve", endpoint="http://a:8080")
        wire = pooled.runner.provider.wire
        assert isinstance(wire, ReplicaPool)
        assert [type(r.endpoint) for r in wire.replicas] == [OipRestEndpoint] * 2
        assert [r.url for r in wire.replicas] == [f"{u}/v2/models/p/infer" for u in urls]
        assert pooled.settings.endpoint == urls[0] and pooled.settings.endpoints == tuple(urls)
        assert isinstance(grpc.runner.provider.wire, OipGrpcEndpoint)
        assert isinstance(hedged.runner.provider.wire, ReplicaPool)
        assert plain.runner.provider.wire is plain.runner.provider.endpoint
        with pytest.raises(ConfigurationError, match="protocol"):
            registry.register("t", provider="kserve", endpoint="http://a:8080", protocol="tcp")
    finally:
        await registry.aclose()
