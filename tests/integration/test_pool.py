"""Replica pools in a real Faust worker on the real broker: balancing, ejection, hedging.

The replicas are fake endpoints (the test double), because the faults these
tests need, a replica that answers 503 to everything and one whose answers
stall for a second at random, cannot be had from MLServer on command; what
each replica received is read from its own counters.
"""

import json

from devtools.fake_endpoint import FakeEndpoint
from tests.integration.support import Collector, Worker, produce, scoring_topics

N_EVENTS = 400
INFER = "/v2/models/{name}/infer"  # the fake's routes: requests, and the start-up
READY = "/v2/models/{name}/ready"  # readiness check (answered 200 too)


def _events(n):
    return [{"id": f"e{i:05d}", "x": [[0.1 * (i % 7), 0.2]]} for i in range(n)]


async def _score(kafka, tmp_path, urls, n, *, events=None, model_env=None, **options):
    """Run one worker over ``n`` events with the model on ``urls``; (outputs, dead letters).

    By default a kserve model over ``_events(n)``; ``model_env`` overrides the
    scoring app's model variables (another provider), ``events`` the events.
    """
    env = {
        **scoring_topics(kafka),
        "KAFKA_BROKER": kafka.url,
        "MODEL_URLS": json.dumps(urls),
        "BATCH_SIZE": "1",
        "MAX_CONCURRENCY": "8",
        "MODEL_OPTIONS": json.dumps({"input_name": "x", **options}),
        **(model_env or {}),
    }
    events = _events(n) if events is None else events
    worker = Worker("tests.integration.apps.scoring", env, tmp_path).start()
    try:
        async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
            await produce(kafka.bootstrap, env["IN_TOPIC"], events, key=lambda e: e["id"])
            out, dlq = seen.records[env["OUT_TOPIC"]], seen.records[env["DLQ_TOPIC"]]
            await seen.wait_for(lambda: len(out) + len(dlq) >= n, 90, workers=[worker])
    finally:
        worker.stop()
    return out, dlq


async def test_requests_spread_over_healthy_replicas_and_a_failing_one_is_ejected(kafka, tmp_path):
    async with (
        FakeEndpoint(latency=0.01) as a,
        FakeEndpoint(latency=0.01) as b,
        FakeEndpoint(latency=0.01, error_rate=1.0) as broken,
    ):
        out, dlq = await _score(
            kafka,
            tmp_path,
            [a.url, b.url, broken.url],
            N_EVENTS,
            replicas={"failures": 3, "eject_time": 60},
        )
        served = {name: ep.stats.by_route[INFER] for name, ep in (("a", a), ("b", b))}
        refused = broken.stats.by_route[INFER]
    assert not dlq and {r["id"] for r in out} == {e["id"] for e in _events(N_EVENTS)}
    assert served["a"] + served["b"] == N_EVENTS
    # Least in flight: the two healthy replicas share the work.
    assert min(served.values()) > 0.3 * N_EVENTS
    # Each 503 went at once to a healthy replica; three in a row eject the
    # broken one for a minute: it saw a few requests at the start (several
    # were in flight at once), then none.
    assert 3 <= refused <= 3 + 8


async def test_hedged_requests_go_around_a_stalling_replica(kafka, tmp_path):
    async with (
        FakeEndpoint(latency=0.005) as a,
        FakeEndpoint(latency=0.005) as b,
        FakeEndpoint(latency=0.005, slow_rate=0.3, slow_latency=1.0) as slow,
    ):
        out, dlq = await _score(
            kafka,
            tmp_path,
            [a.url, b.url, slow.url],
            N_EVENTS,
            # Outlier ejection off, so that the slow replica keeps its share
            # and every slow answer is a hedge's to win.
            replicas={"outlier_factor": None},
            hedge={"delay": 0.1, "budget": 0.5},
        )
        stats = {name: ep.stats for name, ep in (("a", a), ("b", b), ("slow", slow))}
    assert not dlq and len({r["id"] for r in out}) == N_EVENTS
    sent = sum(s.by_route[INFER] for s in stats.values())
    answered = sum(s.by_status[200] - s.by_route[READY] for s in stats.values())
    stalled = stats["slow"].faults["slow"]
    assert stalled > 10
    # Every stalled call got a copy elsewhere (the budget allows half), the
    # copy answered first, and the stalled original was cancelled: the server
    # saw the request go away before it answered.
    assert sent - N_EVENTS >= stalled * 0.8
    assert sent - answered >= stalled * 0.8
    slow = stats["slow"]
    assert slow.by_status[200] - slow.by_route[READY] < slow.by_route[INFER] - stalled * 0.8


async def test_an_openai_compatible_model_on_replicas_spreads_and_ejects(kafka, tmp_path):
    """The same pool behind the openai provider: several vLLM-like servers, one broken."""
    async with (
        FakeEndpoint(latency=0.01, dim=4) as a,
        FakeEndpoint(latency=0.01, dim=4) as b,
        FakeEndpoint(latency=0.01, dim=4, error_rate=1.0) as broken,
    ):
        events = [{"id": f"t{i:04d}", "x": f"sentence {i}"} for i in range(300)]
        out, dlq = await _score(
            kafka,
            tmp_path,
            [f"{ep.url}/v1" for ep in (a, b, broken)],
            300,
            events=events,
            model_env={
                "MODEL_PROVIDER": "openai",
                "MODEL_TASK": "embedding",
                "MODEL_REMOTE_NAME": "fake-model",
                "MODEL_OPTIONS": json.dumps({"replicas": {"failures": 3, "eject_time": 60}}),
            },
        )
        embed = "/v1/embeddings"
        served = [ep.stats.by_route[embed] for ep in (a, b)]
        refused = broken.stats.by_route[embed]
    assert not dlq and {r["id"] for r in out} == {e["id"] for e in events}
    assert all(len(r["output"]) == 4 for r in out)
    assert sum(served) == 300 and min(served) > 0.3 * 300, served
    assert 3 <= refused <= 3 + 8, refused
