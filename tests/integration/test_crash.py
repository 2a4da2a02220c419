"""No event is lost when a worker is SIGKILLed with model calls in flight.

The model server here is the fake endpoint (a test double) with a fixed 50 ms
latency: it guarantees that calls are in flight at the moment of the kill,
which a ~1 ms real model cannot. The broker and the workers are real.
"""

import signal

from devtools.fake_endpoint import FakeEndpoint
from tests.integration.support import Collector, Worker, produce, scoring_topics

N_EVENTS = 3000


async def test_sigkill_mid_stream_loses_nothing(kafka, tmp_path):
    names = scoring_topics(kafka)
    sent = [
        {"id": f"c{i:05d}", "x": [] if i % 500 == 499 else [i % 7 / 7, 0.5, -0.25, 1.0]}
        for i in range(N_EVENTS)
    ]
    bad = {e["id"] for e in sent if not e["x"]}

    async with FakeEndpoint(latency=0.05) as ep:
        env = {
            **names,
            "KAFKA_BROKER": kafka.url,
            "MODEL_URL": ep.url,
            "MAX_CONCURRENCY": "8",
            "BATCH_SIZE": "4",
            "SESSION_TIMEOUT": "6",
        }
        first = Worker("tests.integration.apps.scoring", env, tmp_path, "first").start()
        second = Worker("tests.integration.apps.scoring", env, tmp_path, "second")
        try:
            async with Collector(kafka.bootstrap, names["OUT_TOPIC"], names["DLQ_TOPIC"]) as seen:
                out, dlq = seen.records[names["OUT_TOPIC"]], seen.records[names["DLQ_TOPIC"]]
                await produce(kafka.bootstrap, names["IN_TOPIC"], sent, key=lambda e: e["id"])
                await seen.wait_for(lambda: len(out) >= N_EVENTS // 4, 90, workers=[first])
                await seen.wait_for(lambda: ep.stats.in_flight > 0, 10, workers=[first])
                in_flight_at_kill = ep.stats.in_flight
                first.kill(signal.SIGKILL)
                scored_before_kill = len(out)
                second.start()
                done = {e["id"] for e in sent}
                await seen.wait_for(
                    lambda: {r["id"] for r in out} | {r["event"]["id"] for r in dlq} >= done,
                    150,
                    workers=[second],
                )
        finally:
            first.kill()
            second.stop()

    scored = {r["id"] for r in out}
    dead = {r["event"]["id"] for r in dlq}
    assert scored | dead == done, f"lost: {sorted(done - scored - dead)[:20]}"
    assert dead == bad
    assert in_flight_at_kill > 0 and scored_before_kill < N_EVENTS
    assert len({r["pid"] for r in out}) == 2  # both workers produced results
    duplicates = len(out) - len(scored)
    print(
        f"\nkilled with {in_flight_at_kill} calls in flight after {scored_before_kill} results; "
        f"{duplicates} results were produced twice (at-least-once redelivery)"
    )
