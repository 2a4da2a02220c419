"""A slow and failing shadow, with two workers: the primary's outputs stay the same,
the shadow's failures and dropped copies are counted, agreement is compared.

Both model servers are fake endpoints (test doubles): a real server cannot be
made slow and failing on command. The primary's p99 with and without such a
shadow is measured by ``benchmarks/lifecycle.py`` (a timed assertion here
would be flaky on shared CI machines).
"""

import asyncio
import json

from devtools.fake_endpoint import FakeEndpoint
from faust_inference import ModelRegistry
from tests.integration.lifecycle.support import (
    APP,
    Collector,
    Worker,
    acli,
    both_working,
    lifecycle_env,
    produce,
)

N = 1500


async def test_a_slow_failing_shadow_changes_nothing_for_the_primary(kafka, tmp_path):
    async with FakeEndpoint(latency=0.005) as v1, FakeEndpoint(
        latency=0.3, error_rate=0.5, seed=3
    ) as v2:
        env = lifecycle_env(kafka, v1.url, V2_URL=v2.url, MODEL_REMOTE_NAME="fake-model",
                            SHADOW_IN_FLIGHT="4", V2='{"retries": 0}')
        done = await acli(env, "shadow", "model", "v2", "--rate", "1.0")
        assert done.returncode == 0, done.stderr
        workers = [Worker(APP, env, tmp_path, f"w{i}").start() for i in range(2)]
        events = [{"id": f"s{i:05d}", "x": [(i % 7) / 7] * 10} for i in range(N)]
        try:
            async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
                out = seen.records[env["OUT_TOPIC"]]
                await both_working(kafka.bootstrap, seen, env, workers)
                await produce(kafka.bootstrap, env["IN_TOPIC"], events, key=lambda e: e["id"])
                ids = {e["id"] for e in events}
                await seen.wait_for(lambda: ids <= {r["id"] for r in out}, 120, workers=workers)
                await asyncio.sleep(2.5)  # the last figures are published
                stats = await acli(env, "stats", "model", "--json")
                dlq = seen.records[env["DLQ_TOPIC"]]
        finally:
            for w in workers:
                w.stop()
        registry = ModelRegistry()
        direct = registry.register("direct", provider="kserve", endpoint=v1.url,
                                   remote_name="fake-model", input_name="features")
        expected = {k: await direct.predict([k / 7] * 10) for k in range(7)}
        await registry.aclose()

    mine = [r for r in out if r["id"] in ids]
    assert not dlq and {r["version"] for r in mine} == {"v1"}
    assert all(r["output"] == expected[int(r["id"][1:]) % 7] for r in mine)
    assert stats.returncode == 0, stats.stderr
    shadow = json.loads(stats.stdout)["shadow_stats"]
    sent, dropped, failed = shadow["sent"]["v2"], shadow["dropped"]["v2"], shadow["failed"]["v2"]
    assert dropped > 0 and failed > 0 and sent + dropped >= N
    pair = shadow["agreement"]["v1->v2"]
    assert pair["compared"] + failed <= sent and pair["compared"] > 0
    print(f"\nshadow copies: {sent} sent, {dropped} dropped at the cap, {failed} failed; "
          f"agreement {pair['value']:.3f} over {pair['compared']} pairs")
