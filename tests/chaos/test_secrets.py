"""No planted key appears anywhere (issue 11, item 3).

The model server (the chaos fault server, a test double) answers every call
with a 401 that echoes the request's headers, as a careless proxy does. The
worker has an API key and the endpoint carries Basic userinfo; every event is
dead-lettered (a 401 is the request's fault), and neither the key, nor the
password, nor the Basic header's base64 may appear in the dead letters or in
the worker's log (at DEBUG), in whole or as a 6-character fragment.
"""

from __future__ import annotations

import base64
import functools
import json

from tests.chaos.fault_server import FaultServer
from tests.chaos.support import APP, Collector, Worker, chaos_env, good, produce_raw, stop_timed

KEY = "sk-chaos" + "Q7r2Xv9LmT4pZa8WcN3bK6yD"
PASSWORD = "pw-" + "H5tGv8QmZr2Lx"


def _leaks(text: str, secret: str) -> list[str]:
    return [secret[i : i + 6] for i in range(len(secret) - 5) if secret[i : i + 6] in text]


def _all_dead(n: int, dlq: list[dict]) -> bool:
    return len({r["key"] for r in dlq}) >= n


async def test_echoed_credentials_leak_nowhere(kafka, tmp_path):
    basic = base64.b64encode(f"scorer:{PASSWORD}".encode()).decode()
    async with FaultServer() as server:
        await server.set("echo")
        url = server.url.replace("http://", f"http://scorer:{PASSWORD}@")
        options = json.dumps({"api_key": KEY})
        env = chaos_env(kafka, url, MODEL_OPTIONS=options)
        worker = Worker(APP, env, tmp_path, "secrets", log_level="debug").start()
        try:
            async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
                dlq = seen.records[env["DLQ_TOPIC"]]
                await produce_raw(kafka.bootstrap, env["IN_TOPIC"], map(good, range(20)))
                await seen.wait_for(functools.partial(_all_dead, 20, dlq), 90, workers=[worker])
                stop_seconds = await stop_timed(worker)
        finally:
            worker.kill()
    assert stop_seconds < 10, f"SIGTERM took {stop_seconds:.1f}s"
    assert server.faults.get("echo", 0) > 0
    letters = json.dumps(dlq)
    log = worker.log(lines=1_000_000)
    assert "401" in letters  # the server's answer is there, minus the secrets
    for secret in (KEY, PASSWORD, basic):
        assert _leaks(letters, secret) == [], f"dead letters leak {secret[:4]}..."
        assert _leaks(log, secret) == [], f"the log leaks {secret[:4]}..."
