"""Adding a worker mid-stream: Kafka rebalances the partitions, nothing is lost.

The model server is the fake endpoint (a test double) with a fixed 30 ms latency, so
that calls are in flight while partitions move; the broker and workers are real.
"""

from devtools.fake_endpoint import FakeEndpoint
from tests.integration.support import Collector, Worker, produce, scoring_topics

N_EVENTS = 3000


async def test_a_second_worker_takes_over_partitions_without_loss(kafka, tmp_path):
    names = scoring_topics(kafka)
    sent = [{"id": f"r{i:05d}", "x": [i % 5 / 5, 1.0]} for i in range(N_EVENTS)]

    async with FakeEndpoint(latency=0.03) as ep:
        env = {
            **names,
            "KAFKA_BROKER": kafka.url,
            "MODEL_URL": ep.url,
            "MAX_CONCURRENCY": "4",
            "BATCH_SIZE": "4",
            "SESSION_TIMEOUT": "6",
        }
        first = Worker("tests.integration.apps.scoring", env, tmp_path, "first").start()
        second = Worker("tests.integration.apps.scoring", env, tmp_path, "second")
        try:
            async with Collector(kafka.bootstrap, names["OUT_TOPIC"], names["DLQ_TOPIC"]) as seen:
                out = seen.records[names["OUT_TOPIC"]]
                await produce(kafka.bootstrap, names["IN_TOPIC"], sent, key=lambda e: e["id"])
                await seen.wait_for(lambda: len(out) >= N_EVENTS // 5, 90, workers=[first])
                second.start()
                done = {e["id"] for e in sent}
                await seen.wait_for(
                    lambda: {r["id"] for r in out} >= done, 150, workers=[first, second]
                )
                dlq = seen.records[names["DLQ_TOPIC"]]
        finally:
            first.stop()
            second.stop()

    assert {r["id"] for r in out} == done and not dlq
    by_pid: dict[int, set[int]] = {}
    for r in out:
        by_pid.setdefault(r["pid"], set()).add(r["partition"])
    assert len(by_pid) == 2, "the second worker never got a partition"
    print(
        f"\npartitions per worker: {sorted(map(sorted, by_pid.values()))}; "
        f"{len(out) - len(done)} results produced twice around the rebalance"
    )
