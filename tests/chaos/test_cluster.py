"""The cluster around the worker misbehaves: a worker joins mid-outage, the broker freezes.

Real broker, real worker processes; the model server is the chaos fault server
(a test double, for the outage window). Nothing may be lost, no healthy event
dead-lettered, and the broker's absence must not flood the log.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import signal

from tests.chaos.fault_server import FaultServer
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


def _scored(ids: set[str], out: list[dict]) -> bool:
    return ids <= {r["id"] for r in out}


async def test_a_worker_joining_during_an_outage_takes_over_without_loss(kafka, tmp_path):
    async with FaultServer() as server:
        env = chaos_env(kafka, server.url, MODEL_TIMEOUT="2", SESSION_TIMEOUT="10")
        first = Worker(APP, env, tmp_path, "first").start()
        second = Worker(APP, env, tmp_path, "second")
        n = 1200
        sent = {f"g{i:05d}" for i in range(n)}
        try:
            async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
                out, dlq = seen.records[env["OUT_TOPIC"]], seen.records[env["DLQ_TOPIC"]]
                producing = asyncio.create_task(
                    produce_raw(kafka.bootstrap, env["IN_TOPIC"], map(good, range(n)), rate=40)
                )
                await seen.wait_for(lambda: len(out) >= 40, 90, workers=[first])
                await server.set("down")
                await asyncio.sleep(8)  # events are waiting in the first worker
                second.start()  # a rebalance while they wait
                await asyncio.sleep(20)
                first.assert_alive()
                second.assert_alive()
                assert not dlq
                await server.set("ok")
                await producing
                await seen.wait_for(
                    functools.partial(_scored, sent, out), 120, workers=[first, second]
                )
                stops = [await stop_timed(first), await stop_timed(second)]
        finally:
            first.kill()
            second.kill()
    assert max(stops) < 10, f"SIGTERM took {stops}"
    account = Account(sent, out, dlq)
    assert account.lost == set() and not dlq
    assert len({r["pid"] for r in out}) == 2, "both workers scored events"
    print(f"\nworker joined mid-outage: 0 lost, 0 dead letters, {account.duplicates} duplicates")


async def test_a_frozen_broker_loses_nothing_and_does_not_flood_the_log(kafka, tmp_path):
    async with FaultServer() as server:
        env = chaos_env(kafka, server.url, SESSION_TIMEOUT="30")
        worker = Worker(APP, env, tmp_path, "worker").start()
        n = 1200
        sent = {f"g{i:05d}" for i in range(n)}
        try:
            async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
                out, dlq = seen.records[env["OUT_TOPIC"]], seen.records[env["DLQ_TOPIC"]]
                producing = asyncio.create_task(
                    produce_raw(kafka.bootstrap, env["IN_TOPIC"], map(good, range(n)), rate=40)
                )
                await seen.wait_for(lambda: len(out) >= 40, 90, workers=[worker])
                before = len(worker.log(lines=1_000_000).splitlines())
                os.kill(kafka.pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(15)
                finally:
                    os.kill(kafka.pid, signal.SIGCONT)
                await producing
                await seen.wait_for(functools.partial(_scored, sent, out), 150, workers=[worker])
                stop_seconds = await stop_timed(worker)
        finally:
            worker.kill()
    assert stop_seconds < 10, f"SIGTERM took {stop_seconds:.1f}s"
    lines = worker.log(lines=1_000_000).splitlines()[before:]
    errors = [line for line in lines if re.search(r"\[(ERROR|WARNING)\]", line)]
    account = Account(sent, out, dlq)
    assert account.lost == set() and not dlq
    assert len(errors) < 300, "\n".join(errors[:50])
    print(
        f"\nbroker frozen 15 s: 0 lost, {account.duplicates} duplicates, "
        f"{len(errors)} WARNING/ERROR lines after the freeze"
    )
