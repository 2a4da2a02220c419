"""Misconfiguration stops the worker once, at start-up, saying what to fix (issue 11, item 4).

Before, a cache whose partitions did not match the source topic, or a fallback
to a model that does not exist, raised on the first event; Faust restarted the
agent every few seconds forever, nothing was processed and SIGTERM hung. Here
each mistake must end the worker process on its own, with a non-zero exit and
the fix in its log. The model server is the chaos fault server (a test double
whose readiness answer the test controls).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.chaos.fault_server import FaultServer
from tests.chaos.support import APP, Worker, chaos_env


async def _exits(worker: Worker, timeout: float = 60.0) -> tuple[int, float, str]:
    started = time.monotonic()
    while worker.alive() and time.monotonic() - started < timeout:
        await asyncio.sleep(0.25)
    alive = worker.alive()
    worker.kill()
    assert not alive, f"{worker.name} still running after {timeout}s:\n{worker.log()}"
    assert worker.proc is not None
    return worker.proc.returncode, time.monotonic() - started, worker.log(lines=100_000)


@pytest.mark.parametrize(
    ("name", "extra", "fix"),
    [
        (
            "cache-partitions",
            {"TOPIC_PARTITIONS": "8", "MODEL_OPTIONS": '{"cache": true}'},
            "CacheSettings(partitions=4)",
        ),
        ("fallback", {"MODEL_OPTIONS": '{"fallback": "nope"}'}, "'nope', which is not registered"),
        ("infer-above-agent", {"INFER_ABOVE_AGENT": "1"}, "below @app.agent"),
        ("missing-model", {}, "/v2/models/fraud"),
        ("endpoint-query", {"MODEL_URL_SUFFIX": "?key=abc"}, "query"),
    ],
)
async def test_a_misconfigured_worker_stops_once_with_the_fix(kafka, tmp_path, name, extra, fix):
    async with FaultServer() as server:
        if name == "missing-model":
            server.missing.add("fraud")
        url = server.url + extra.pop("MODEL_URL_SUFFIX", "")
        env = chaos_env(kafka, url, **extra)
        worker = Worker(APP, env, tmp_path, name).start()
        code, seconds, log = await _exits(worker)
    assert code != 0, log[-3000:]
    assert fix in log, log[-3000:]
    # Once: no restart loop of the agent.
    assert log.count("Restarting agent") == 0 and log.count("cannot start") <= 1, log[-3000:]
    print(f"\n{name}: exit {code} after {seconds:.1f}s")
