"""A live switch through the CLI, with two workers in one group, against the real MLServer.

v1 calls ``/v2/models/fraud/versions/v1/infer``, v2 the same MLServer without a
version in the path: two versions of one real model, told apart by ``r.version``.
"""

import asyncio
import itertools
import time

from examples.fraud_detection.train import make_transactions
from tests.integration.lifecycle.support import (
    APP,
    Collector,
    Worker,
    acli,
    applied,
    both_working,
    lifecycle_env,
    produce,
    wait_applied,
)

N = 4000


async def test_a_cli_switch_reaches_both_workers_without_losing_an_event(kafka, mlserver, tmp_path):
    env = lifecycle_env(kafka, mlserver.url, V2='{"version_in_path": false}')
    workers = [Worker(APP, env, tmp_path, f"w{i}").start() for i in range(2)]
    rows, _ = make_transactions(N, seed=21)
    try:
        async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
            out, dlq = seen.records[env["OUT_TOPIC"]], seen.records[env["DLQ_TOPIC"]]
            await both_working(kafka.bootstrap, seen, env, workers)

            stop = asyncio.Event()
            sent = []

            async def trickle():  # events keep flowing until after the switch
                for i in range(0, N, 20):
                    if stop.is_set():
                        return
                    batch = [{"id": f"e{j:05d}", "x": rows[j]} for j in range(i, i + 20)]
                    await produce(kafka.bootstrap, env["IN_TOPIC"], batch, key=lambda e: e["id"])
                    sent.extend(batch)
                    await asyncio.sleep(0.1)

            producing = asyncio.create_task(trickle())
            await asyncio.sleep(1.0)
            issued = time.time()
            done = await acli(env, "switch", "model", "v2", "--reason", "integration test")
            assert done.returncode == 0, done.stderr
            assert "revision 1: switch to v2 (integration test)" in done.stdout
            await wait_applied(workers, 1)
            await asyncio.sleep(1.0)
            stop.set()
            await producing
            ids = {e["id"] for e in sent}
            await seen.wait_for(lambda: ids <= {r["id"] for r in out}, 120, workers=workers)
            # Events produced after every worker applied the switch.
            late = [{"id": f"late{i}", "x": rows[i]} for i in range(200)]
            await produce(kafka.bootstrap, env["IN_TOPIC"], late, key=lambda e: e["id"])
            late_ids = {e["id"] for e in late}
            await seen.wait_for(lambda: late_ids <= {r["id"] for r in out}, 60, workers=workers)
            listing = await acli(env, "list")
    finally:
        for w in workers:
            w.stop()

    assert not dlq, dlq[:3]
    mine = [r for r in out if r["id"] in ids]
    assert {r["version"] for r in mine} == {"v1", "v2"}
    # Within each partition, v1 answers up to the switch and v2 after it.
    by_partition = {}
    for r in sorted(mine, key=lambda r: r["offset"]):
        by_partition.setdefault(r["partition"], []).append(r["version"])
    for versions in by_partition.values():
        flips = sum(a != b for a, b in itertools.pairwise(versions))
        assert flips <= 1 and versions[0] == "v1", versions
    after = [r for r in out if r["id"] in late_ids]
    assert {r["version"] for r in after} == {"v2"} and {r["variant"] for r in after} == {"default"}
    assert len({r["pid"] for r in after}) == 2, "both workers answer with v2"
    assert all(abs(sum(r["output"]) - 1) < 1e-9 for r in mine)  # real probabilities
    delays = [d for w in workers for rev, _, d in applied(w) if rev == 1]
    print(f"\nswitch applied by each worker {', '.join(f'{d:.2f}' for d in delays)} s after "
          f"it was written ({time.time() - issued:.1f} s for the whole test tail)")
    assert max(delays) < 5.0
    assert listing.returncode == 0, listing.stderr
    assert "v2" in listing.stdout and "100%" in listing.stdout
