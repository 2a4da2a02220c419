"""Outages slow the stream; they do not fail its events (issue 11, items 2 and 5).

A real worker on the real broker scores a paced stream while the model server
(``fault_server.FaultServer``, a test double that misbehaves for a window of
time) is down, stalled, or answering garbage. Every event must be scored once
the server is back, none dead-lettered, and the worker must stop within 10 s
even while events wait for a server that is down.
"""

from __future__ import annotations

import asyncio
import functools
import time

from tests.chaos.fault_server import FaultServer, Mode
from tests.chaos.support import (
    APP,
    Account,
    Collector,
    Worker,
    chaos_env,
    good,
    produce_raw,
    stop_timed,
)

RATE = 40.0


def _scored(ids: set[str], out: list[dict]) -> bool:
    return ids <= {r["id"] for r in out}


async def _run_through(
    kafka,
    tmp_path,
    windows: list[tuple[Mode, float]],
    *,
    stop_during_outage: bool = False,
    options: str = "{}",
) -> FaultServer:
    async with FaultServer() as server:
        env = chaos_env(
            kafka, server.url, MODEL_TIMEOUT="2", COMMIT_INTERVAL="0.5", MODEL_OPTIONS=options
        )
        first = Worker(APP, env, tmp_path, "first").start()
        second = Worker(APP, env, tmp_path, "second")
        faults = sum(seconds for _, seconds in windows)
        n = int(RATE * (faults + 10))
        sent = {f"g{i:05d}" for i in range(n)}
        try:
            async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
                out, dlq = seen.records[env["OUT_TOPIC"]], seen.records[env["DLQ_TOPIC"]]
                producing = asyncio.create_task(
                    produce_raw(kafka.bootstrap, env["IN_TOPIC"], map(good, range(n)), rate=RATE)
                )
                await seen.wait_for(lambda: len(out) >= 40, 90, workers=[first])
                for mode, seconds in windows:
                    await server.set(mode)
                    deadline = time.monotonic() + seconds
                    while time.monotonic() < deadline:
                        first.assert_alive()
                        assert not dlq, f"dead letters during {mode}: {dlq[:2]}"
                        await asyncio.sleep(0.5)
                await server.set("ok")
                await producing
                await seen.wait_for(functools.partial(_scored, sent, out), 120, workers=[first])
                assert not dlq, f"healthy events dead-lettered: {dlq[:2]}"
                if stop_during_outage:
                    # Events waiting for a server that is down must not hold the stop.
                    await server.set("down")
                    more = {f"g{i:05d}" for i in range(n, n + 100)}
                    await produce_raw(
                        kafka.bootstrap, env["IN_TOPIC"], map(good, range(n, n + 100))
                    )
                    await asyncio.sleep(4)
                    stop_seconds = await stop_timed(first)
                    assert stop_seconds < 10, f"SIGTERM took {stop_seconds:.1f}s\n{first.log()}"
                    await server.set("ok")
                    second.start()
                    sent |= more
                    await seen.wait_for(
                        functools.partial(_scored, sent, out), 120, workers=[second]
                    )
                    assert not dlq
                    second_stop = await stop_timed(second)
                    assert second_stop < 10, f"SIGTERM took {second_stop:.1f}s"
                else:
                    first_stop = await stop_timed(first)
                    assert first_stop < 10, f"SIGTERM took {first_stop:.1f}s"
        finally:
            first.kill()
            second.kill()
    log = first.log(lines=100_000)
    assert log.count("outage began") >= 1, log[-3000:]
    account = Account(sent, out, dlq)
    assert account.lost == set() and not dlq
    print(
        f"\n{len(sent)} events through {windows}: 0 dead letters, 0 lost, "
        f"{account.duplicates} duplicates; server faulted {server.faulted} requests; "
        f"'outage began' logged {log.count('outage began')}x, "
        f"'outage ended' {log.count('outage ended')}x; faults served: {server.faults}"
    )
    return server


async def test_outages_slow_the_stream_and_lose_nothing(kafka, tmp_path):
    """Three scenarios at once, each with its own worker, topics and server.

    Run side by side: they mostly wait, and one after the other they would
    cost four minutes of CI.
    """
    garbage: list[tuple[Mode, float]] = [("down", 10.0)]
    for kind in ("500", "html502", "truncated", "invalid_json", "fewer"):
        garbage += [(kind, 4.0), ("ok", 1.0)]
    # Probing every second, so that every kind of garbage is really served.
    fast_probes = '{"circuit_breaker": {"reset_timeout": 1.0}}'
    down, stalled, answered_garbage = await asyncio.gather(
        _run_through(kafka, tmp_path / "down", [("down", 60.0)], stop_during_outage=True),
        _run_through(kafka, tmp_path / "stall", [("stall", 60.0)]),
        _run_through(kafka, tmp_path / "garbage", garbage, options=fast_probes),
    )
    assert down.faults and stalled.faults.get("stall", 0) > 0
    assert set(answered_garbage.faults) >= {"500", "html502", "truncated", "invalid_json", "fewer"}
