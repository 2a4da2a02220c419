"""A sticky 90/10 split over 10,000 keys, with two workers, across a restart of both.

The model server is the fake endpoint (a test double): the routing is under
test, not the model, and 20,000 events must go through in CI time. The
broker, the workers and the CLI are real.
"""

from devtools.fake_endpoint import FakeEndpoint
from tests.integration.lifecycle.support import (
    APP,
    Collector,
    Worker,
    both_working,
    cli,
    lifecycle_env,
    produce,
)

KEYS = 10_000


async def score_all(kafka, env, workers, round_):
    sent = [{"id": f"k{i:05d}", "x": [0.5] * 10} for i in range(KEYS)]
    async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
        out = seen.records[env["OUT_TOPIC"]]
        await both_working(kafka.bootstrap, seen, env, workers)
        start = len(out)
        await produce(kafka.bootstrap, env["IN_TOPIC"], sent, key=lambda e: e["id"])
        await seen.wait_for(
            lambda: len({r["id"] for r in out[start:] if r["id"].startswith("k")}) >= KEYS,
            120, workers=workers)
        assert not seen.records[env["DLQ_TOPIC"]]
    arms = {r["id"]: (r["version"], r["variant"]) for r in out[start:] if r["id"].startswith("k")}
    pids = {r["pid"] for r in out[start:] if r["id"].startswith("k")}
    return arms, pids


async def test_a_90_10_split_is_sticky_across_a_restart_of_both_workers(kafka, tmp_path):
    async with FakeEndpoint() as ep:
        env = lifecycle_env(kafka, ep.url, MODEL_REMOTE_NAME="fake-model")
        # Issued before any worker runs: the record waits on the control topic.
        done = cli(env, "split", "model", "v1=90", "v2=10", "--reason", "A/B test")
        assert done.returncode == 0, done.stderr
        rounds = []
        for round_ in range(2):
            workers = [Worker(APP, env, tmp_path, f"r{round_}w{i}").start() for i in range(2)]
            try:
                rounds.append(await score_all(kafka, env, workers, round_))
            finally:
                for w in workers:
                    w.stop()
    (first, pids1), (second, pids2) = rounds
    assert len(pids1) == 2 and len(pids2) == 2 and not pids1 & pids2
    share = sum(v == "v2" for v, _ in first.values()) / KEYS
    assert 0.08 <= share <= 0.12, share
    assert set(first.values()) == {("v1", "control"), ("v2", "treatment")}
    assert first == second, "a key changed arms across the restart"
    print(f"\nv2 share over {KEYS} keys: {share:.2%}; every key kept its arm across the restart")
