"""Protecting the model server: adaptive rate limit on 429, circuit breaker, no event lost.

A real worker on the real broker calls devtools' fake endpoint: a FAKE model
server, used here because only a fake can be told to rate-limit at an exact
rate (429 with Retry-After, like real gateways) and to fail and recover on
command. The worker's own ``/metrics`` shows the breaker's state.
"""

import asyncio
import json
import time

from devtools.fake_endpoint import FakeEndpoint
from tests.integration.observe import free_port, scrape, total
from tests.integration.support import Collector, Worker, produce, scoring_topics

SERVER_RPS = 40.0


def observed_env(kafka, url, **extra):
    return {
        **scoring_topics(kafka),
        "KAFKA_BROKER": kafka.url,
        "MODEL_URL": url,
        "MODEL_REMOTE_NAME": "fake-model",
        "MODEL_OPTIONS": '{"input_name": "features"}',
        "WEB_PORT": str(free_port()),
        **extra,
    }


def rows(n, prefix):
    return [{"id": f"{prefix}{i:05d}", "x": [0.01 * (i % 7)] * 4} for i in range(n)]


async def test_the_limiter_converges_to_the_servers_rate_with_no_dead_letters(kafka, tmp_path):
    n = 900
    async with FakeEndpoint(latency=0.005, rate_limit_rps=SERVER_RPS) as ep:
        env = observed_env(
            kafka,
            ep.url,
            BATCH_SIZE="1",  # one event per request: requests/s = events/s
            # Five times what the server takes; 429s must not use up one retry.
            RATE_LIMIT=json.dumps({"requests_per_second": 5 * SERVER_RPS}),
            RETRIES=json.dumps({"max_retries": 1, "initial_backoff": 0.05}),
        )
        worker = Worker("tests.integration.apps.observed", env, tmp_path).start()
        try:
            async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
                out, dlq = seen.records[env["OUT_TOPIC"]], seen.records[env["DLQ_TOPIC"]]
                await produce(kafka.bootstrap, env["IN_TOPIC"], rows(n, "e"), key=lambda e: e["id"])
                timeline = []  # (seconds, requests answered 200 so far)
                deadline = time.monotonic() + 120
                while len(out) + len(dlq) < n:
                    assert time.monotonic() < deadline, f"{len(out)} + {len(dlq)} of {n}"
                    worker.assert_alive()
                    timeline.append((time.monotonic(), ep.stats.by_status.get(200, 0)))
                    await asyncio.sleep(0.25)
                _, samples = await scrape(int(env["WEB_PORT"]))
        finally:
            worker.stop()
        stats = ep.stats

    assert dlq == [] and len({r["id"] for r in out}) == n
    throttled = stats.by_status.get(429, 0)
    assert throttled > 0  # the server did push back
    assert throttled < 0.25 * n, stats.by_status  # and the client listened
    # Steady state: from a third of the answers to the end.
    start = next(t for t in timeline if t[1] >= n / 3)
    end = timeline[-1]
    rate = (end[1] - start[1]) / (end[0] - start[0])
    assert 0.6 * SERVER_RPS <= rate <= 1.2 * SERVER_RPS, rate
    limit = total(samples, "faust_inference_rate_limit_requests_per_second")
    print(
        f"steady {rate:.1f} req/s (server {SERVER_RPS:g}), limit now {limit:.1f}, 429s {throttled}"
    )
    assert 0.4 * SERVER_RPS <= limit <= 1.5 * SERVER_RPS, limit
    assert total(samples, "faust_inference_errors_total", error="RateLimited") == throttled


async def circuit_state(port: int) -> float:
    _, samples = await scrape(port)
    return total(samples, "faust_inference_circuit_state")


async def test_a_failing_endpoint_opens_the_breaker_which_closes_when_it_recovers(kafka, tmp_path):
    n = 60
    async with FakeEndpoint(latency=0.005, error_rate=1.0) as ep:
        env = observed_env(
            kafka,
            ep.url,
            CIRCUIT_BREAKER=json.dumps({"failures": 3, "reset_timeout": 1.0}),
            RETRIES=json.dumps({"max_retries": 2, "initial_backoff": 0.05}),
        )
        port = int(env["WEB_PORT"])
        worker = Worker("tests.integration.apps.observed", env, tmp_path).start()
        try:
            async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
                out, dlq = seen.records[env["OUT_TOPIC"]], seen.records[env["DLQ_TOPIC"]]
                await produce(kafka.bootstrap, env["IN_TOPIC"], rows(n, "b"), key=lambda e: e["id"])
                await seen.wait_for(lambda: ep.stats.total >= 3, 60, workers=[worker])
                deadline = time.monotonic() + 30
                while True:  # the web server may still be starting
                    try:
                        if await circuit_state(port) == 2:  # open
                            break
                    except OSError:
                        pass
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
                # While open, only probes reach the server: about one a second.
                before = ep.stats.total
                await asyncio.sleep(3.0)
                probes = ep.stats.total - before
                assert 1 <= probes <= 8, probes
                print(f"probes while open: {probes} in 3 s")
                assert out == [] and dlq == []  # waiting, not failing
                ep.configure(error_rate=0.0)
                await seen.wait_for(lambda: len(out) >= n, 60, workers=[worker])
                assert await circuit_state(port) == 0  # closed
        finally:
            worker.stop()

    assert dlq == [] and {r["id"] for r in out} == {e["id"] for e in rows(n, "b")}
