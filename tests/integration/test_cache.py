"""The result cache in a Faust table, on the real broker.

The replay test counts the model server's requests across a SIGKILL: after a
second worker takes over, it must call the model exactly once for every
event whose result had not reached the cache's changelog, and never for one
that had. The server there is the fake endpoint (a test double) because the
test needs an exact request count and calls in flight at the kill; the
global-table test uses it too, for the exact count of calls a second round
costs. The cache test against the real MLServer shows the same table serving
real results.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from devtools.fake_endpoint import FakeEndpoint
from tests.integration.support import Collector, Worker, produce, scoring_topics

APP = "tests.integration.apps.scoring"


async def changelog_keys(bootstrap: str, topic: str) -> set[str]:
    """Keys with a live value in a changelog topic, read from the start to its end now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        for _ in range(50):
            if partitions:
                break
            await asyncio.sleep(0.1)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"no changelog topic {topic}"
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        live: dict[str, bool] = {}
        for _ in range(600):
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for r in records:
                    live[orjson.loads(r.key)] = r.value is not None
        else:
            raise AssertionError("changelog not read to its end")
        return {k for k, alive in live.items() if alive}
    finally:
        await consumer.stop()


def changelog_topic(names: dict[str, str]) -> str:
    return f"{names['APP_ID']}-faust-inference-cache-model-changelog"


def _infer_calls(ep: FakeEndpoint) -> int:
    """Inference requests only: the workers' start-up readiness checks are not calls."""
    return sum(n for route, n in ep.stats.by_route.items() if route.endswith("/infer"))


async def test_after_a_sigkill_only_unscored_events_call_the_model(kafka, tmp_path):
    n = 2400
    names = scoring_topics(kafka)
    sent = [{"id": f"r{i:05d}", "x": [i / n, 0.5, -0.25, 1.0]} for i in range(n)]
    async with FakeEndpoint(latency=0.02) as ep:
        env = {
            **names,
            "KAFKA_BROKER": kafka.url,
            "MODEL_URL": ep.url,
            "MAX_CONCURRENCY": "8",
            "BATCH_SIZE": "1",  # one event per request: requests count events
            "SESSION_TIMEOUT": "6",
            # Events scored in the last commit interval before the kill are
            # delivered again to the second worker. (The first commits happen
            # before the kill: a restart on partitions without any committed
            # offset meets a Faust race, see docs/guarantees.md.)
            "COMMIT_INTERVAL": "2",
            "CACHE": json.dumps({"partitions": 4}),
        }
        first = Worker(APP, env, tmp_path, "first").start()
        second = Worker(APP, env, tmp_path, "second")
        try:
            async with Collector(kafka.bootstrap, names["OUT_TOPIC"], names["DLQ_TOPIC"]) as seen:
                out = seen.records[names["OUT_TOPIC"]]
                await produce(kafka.bootstrap, names["IN_TOPIC"], sent, key=lambda e: e["id"])
                await seen.wait_for(lambda: len(out) >= n // 2, 90, workers=[first])
                first.kill(signal.SIGKILL)
                await asyncio.sleep(0.5)  # requests already on the wire reach the server
                calls_before = _infer_calls(ep)
                scored = await changelog_keys(kafka.bootstrap, changelog_topic(names))
                second.start()
                ids = {e["id"] for e in sent}
                await seen.wait_for(lambda: {r["id"] for r in out} >= ids, 120, workers=[second])
                await asyncio.sleep(1.0)  # nothing else should arrive
                calls_after = _infer_calls(ep) - calls_before
        finally:
            first.kill()
            second.stop()
    # By process, not by arrival: the first worker's last results may be read late.
    after = [r for r in out if r["pid"] == second.pid]
    replayed_hits = [r for r in after if r["cached"]]
    print(
        f"events {n}, scored before the kill {len(scored)}, calls after {calls_after}, "
        f"results after {len(after)}, of which from the cache {len(replayed_hits)}"
    )
    assert 0 < len(scored) < n
    assert calls_after == n - len(scored), (calls_after, n, len(scored))
    assert replayed_hits, "no redelivered event was answered from the cache"
    # Each unscored event was called for once: a second delivery inside the new
    # worker (its own rebalance) shares the call in flight or hits the table.
    assert len({r["id"] for r in after if not r["cached"]}) == calls_after
    assert not seen.records[names["DLQ_TOPIC"]]
    # A cached answer is the answer the model gave the first time.
    first_answer = {r["id"]: r["output"] for r in out if r["pid"] == first.pid}
    for r in replayed_hits:
        if r["id"] in first_answer:
            assert r["output"] == first_answer[r["id"]]


async def test_repeated_inputs_are_answered_from_the_table_with_the_real_model(
    kafka, mlserver, tmp_path
):
    names = scoring_topics(kafka)
    rows = [[(i * 10 + j) / 400 for j in range(10)] for i in range(40)]  # all distinct
    first = [{"id": f"a{i:03d}", "x": row} for i, row in enumerate(rows)]
    # The same inputs again, with the same keys (so on the same partitions).
    again = [{"id": f"a{i:03d}", "x": row} for i, row in enumerate(rows)]
    env = {
        **names,
        "KAFKA_BROKER": kafka.url,
        "MODEL_URL": mlserver.url,
        "MODEL_OPTIONS": json.dumps({"input_name": "features", "shape": [10]}),
        "CACHE": json.dumps({"partitions": 4, "ttl": 600}),
    }
    worker = Worker(APP, env, tmp_path, "cache").start()
    try:
        async with Collector(kafka.bootstrap, names["OUT_TOPIC"], names["DLQ_TOPIC"]) as seen:
            out = seen.records[names["OUT_TOPIC"]]
            await produce(kafka.bootstrap, names["IN_TOPIC"], first, key=lambda e: e["id"])
            await seen.wait_for(lambda: len(out) >= len(first), 60, workers=[worker])
            await produce(kafka.bootstrap, names["IN_TOPIC"], again, key=lambda e: e["id"])
            await seen.wait_for(lambda: len(out) >= 2 * len(first), 60, workers=[worker])
    finally:
        worker.stop()
    by_round: list[dict[str, Any]] = [
        {r["id"]: r for r in out[: len(first)]},
        {r["id"]: r for r in out[len(first) :]},
    ]
    assert not any(r["cached"] for r in by_round[0].values())
    assert all(r["cached"] for r in by_round[1].values())
    for key, r in by_round[1].items():
        assert r["output"] == by_round[0][key]["output"]
        assert len(r["output"]) == 2 and abs(sum(r["output"]) - 1) < 1e-6  # predict_proba
    stored = await changelog_keys(kafka.bootstrap, changelog_topic(names))
    assert len(stored) == len(rows)


async def test_a_global_cache_answers_inputs_scored_by_another_worker(kafka, tmp_path):
    names = scoring_topics(kafka)
    n = 200
    rows = [[i / n, 0.25, 0.5, 0.75] for i in range(n)]
    first = [{"id": f"g{i:04d}", "x": row} for i, row in enumerate(rows)]
    # The same inputs under new keys: most land on another partition, often
    # on the other worker, where only a global table can know them.
    again = [{"id": f"h{i:04d}", "x": row} for i, row in enumerate(rows)]
    async with FakeEndpoint(latency=0.005) as ep:
        env = {
            **names,
            "KAFKA_BROKER": kafka.url,
            "MODEL_URL": ep.url,
            "SESSION_TIMEOUT": "6",
            "CACHE": json.dumps({"table": "global"}),
        }
        workers = [Worker(APP, env, tmp_path, f"global{i}") for i in range(2)]
        try:
            async with Collector(kafka.bootstrap, names["OUT_TOPIC"], names["DLQ_TOPIC"]) as seen:
                out = seen.records[names["OUT_TOPIC"]]
                for i, w in enumerate(workers):  # one by one, each ready before events flow
                    w.start()
                    await seen.wait_for(
                        lambda w=w: "Ready" in w.log_path.read_text(), 60, workers=workers[: i + 1]
                    )
                await asyncio.sleep(3.0)  # the rebalance that gives the second one partitions
                await produce(kafka.bootstrap, names["IN_TOPIC"], first, key=lambda e: e["id"])
                await seen.wait_for(lambda: len(out) >= n, 60, workers=workers)
                await asyncio.sleep(2.0)  # the global table's writes reach every worker
                calls = ep.stats.total
                await produce(kafka.bootstrap, names["IN_TOPIC"], again, key=lambda e: e["id"])
                await seen.wait_for(lambda: len(out) >= 2 * n, 60, workers=workers)
                calls_again = ep.stats.total - calls
        finally:
            for w in workers:
                w.stop()
    firsts = {r["id"][1:]: r for r in out if r["id"].startswith("g")}
    second = [r for r in out if r["id"].startswith("h")]
    assert calls_again == 0
    assert all(r["cached"] for r in second)
    assert all(r["output"] == firsts[r["id"][1:]]["output"] for r in second)
    # The point of a global table: answers for inputs the *other* worker scored.
    elsewhere = [r for r in second if r["pid"] != firsts[r["id"][1:]]["pid"]]
    assert elsewhere, "every input came back to the worker that scored it; nothing shown"
