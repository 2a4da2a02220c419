"""Guarded rollouts with two workers: a canary failing 20% of calls is rolled back by its
guard; a healthy one is promoted to 100%.

The model servers are fake endpoints (test doubles): a real server cannot be
made to fail exactly one call in five on command. Broker, workers, CLI and
the control records are real.
"""

import asyncio
import time

from devtools.fake_endpoint import FakeEndpoint
from faust_inference.lifecycle import ControlClient
from tests.integration.lifecycle.support import (
    APP,
    Collector,
    Worker,
    acli,
    both_working,
    lifecycle_env,
    produce,
)


async def wait_rollout(client, status, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = (await client.states()).get("model")
        if state is not None and state.rollout is not None and state.rollout.status == status:
            return state
        await asyncio.sleep(0.5)
    raise AssertionError(f"rollout never {status}: {state}")


async def test_a_failing_canary_is_rolled_back_and_a_healthy_one_promoted(kafka, tmp_path):
    async with FakeEndpoint(latency=0.005) as v1, FakeEndpoint(
        latency=0.005, error_rate=0.2, seed=7
    ) as v2:
        env = lifecycle_env(kafka, v1.url, V2_URL=v2.url, MODEL_REMOTE_NAME="fake-model",
                            RETRIES="5")
        workers = [Worker(APP, env, tmp_path, f"w{i}").start() for i in range(2)]
        client = ControlClient(kafka.bootstrap, env["APP_ID"])
        stop = asyncio.Event()
        try:
            async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
                await both_working(kafka.bootstrap, seen, env, workers)

                async def traffic():
                    i = 0
                    while not stop.is_set():
                        batch = [{"id": f"t{i + j}", "x": [0.3] * 10} for j in range(40)]
                        await produce(kafka.bootstrap, env["IN_TOPIC"], batch,
                                      key=lambda e: e["id"])
                        i += 40
                        await asyncio.sleep(0.1)

                feeding = asyncio.create_task(traffic())
                guards = ["--max-error-rate", "0.05", "--min-requests", "20", "--dwell", "2",
                          "--steps", "10,50"]
                done = await acli(env, "rollout", "model", "v2", *guards)
                assert done.returncode == 0, done.stderr
                failed = await wait_rollout(client, "rolled_back")
                v2.configure(error_rate=0.0)
                done = await acli(env, "rollout", "model", "v2", *guards)
                assert done.returncode == 0, done.stderr
                promoted = await wait_rollout(client, "promoted", timeout=90)
                stop.set()
                await feeding
                history = await acli(env, "history", "model")
        finally:
            stop.set()
            await client.aclose()
            for w in workers:
                w.stop()

    assert failed.default == "v1" and failed.arms() == [("v1", 100.0)]
    assert "guard error_rate broke at 10%: error rate" in failed.rollout.last_decision
    assert promoted.default == "v2" and promoted.arms() == [("v2", 100.0)]
    actions = [c.action for c in promoted.history]
    assert actions == ["rollout", "rollback", "rollout", "advance", "advance", "promote"]
    assert all(c.source == "rollout" for c in promoted.history if c.action != "rollout")
    assert "guard error_rate broke" in history.stdout and "promote to v2" in history.stdout
    print(f"\nrolled back: {failed.rollout.last_decision}\npromoted: "
          f"{promoted.rollout.last_decision}")
