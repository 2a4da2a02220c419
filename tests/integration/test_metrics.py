"""``/metrics`` of a real worker scoring through a real MLServer, parsed with prometheus_client."""

import pytest
from prometheus_client import CollectorRegistry

from examples.fraud_detection.train import make_transactions
from faust_inference.sensors.prometheus import PrometheusObserver
from tests.integration.observe import free_port, parse, scrape, total
from tests.integration.support import Collector, Worker, produce, scoring_topics

N_GOOD, N_BAD = 150, 10

FAMILIES = {
    "faust_inference_requests",
    "faust_inference_request_duration_seconds",
    "faust_inference_in_flight",
    "faust_inference_batch_size",
    "faust_inference_errors",
    "faust_inference_retries",
    "faust_inference_events",
    "faust_inference_event_duration_seconds",
    "faust_inference_dead_letters",
    "faust_inference_fallbacks",
    "faust_inference_cache_hits",
    "faust_inference_cache_misses",
    "faust_inference_input_tokens",
    "faust_inference_output_tokens",
    "faust_inference_estimated_cost",
    "faust_inference_circuit_state",
    "faust_inference_rate_limit_requests_per_second",
    "faust_inference_drift_psi",
    "faust_inference_drift_alerts",
}


async def test_a_running_worker_exposes_every_metric_and_they_move(kafka, mlserver, tmp_path):
    port = free_port()
    env = {
        **scoring_topics(kafka),
        "KAFKA_BROKER": kafka.url,
        "MODEL_URL": mlserver.url,
        "MODEL_VERSION": "v1",
        "MODEL_OPTIONS": '{"input_name": "features", "shape": [10], "cache": {"table": "global"}}',
        "WEB_PORT": str(port),
    }
    rows, _ = make_transactions(N_GOOD, seed=5)
    good = [{"id": f"g{i}", "x": row} for i, row in enumerate(rows)]
    bad = [{"id": f"b{i}", "x": row[:7]} for i, row in enumerate(rows[:N_BAD])]
    again = [{"id": f"again{i}", "x": row} for i, row in enumerate(rows)]  # cache hits
    worker = Worker("tests.integration.apps.observed", env, tmp_path).start()
    try:
        async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
            out, dlq = seen.records[env["OUT_TOPIC"]], seen.records[env["DLQ_TOPIC"]]
            await produce(kafka.bootstrap, env["IN_TOPIC"], good + bad, key=lambda e: e["id"])
            await seen.wait_for(
                lambda: len(out) + len(dlq) >= N_GOOD + N_BAD, 120, workers=[worker]
            )
            await produce(kafka.bootstrap, env["IN_TOPIC"], again, key=lambda e: e["id"])
            await seen.wait_for(lambda: len(out) >= 2 * N_GOOD, 60, workers=[worker])
            families, samples = await scrape(port)
    finally:
        worker.stop()

    assert families >= FAMILIES, FAMILIES - families
    model = {"model": "model", "version": "v1", "provider": "kserve"}
    ok_requests = total(samples, "faust_inference_requests_total", outcome="ok", **model)
    assert ok_requests >= 1
    assert total(samples, "faust_inference_request_duration_seconds_count", outcome="ok") == (
        ok_requests
    )
    assert total(samples, "faust_inference_request_duration_seconds_sum", outcome="ok") > 0
    # Every good input was sent (the rerun was answered by the cache), in batches.
    batched = total(samples, "faust_inference_batch_size_sum", **model)
    assert batched >= N_GOOD + N_BAD
    assert total(samples, "faust_inference_in_flight", **model) == 0
    # Bad rows fail encoding (no call) and go to the dead-letter topic.
    assert total(samples, "faust_inference_errors_total", error="InvalidInput") >= N_BAD
    assert total(samples, "faust_inference_dead_letters_total", error="InvalidInput") == N_BAD
    assert total(samples, "faust_inference_events_total", outcome="dead_letter") == N_BAD
    assert total(samples, "faust_inference_events_total", outcome="ok") >= N_GOOD
    events = total(samples, "faust_inference_event_duration_seconds_count")
    assert events >= 2 * N_GOOD + N_BAD  # more only if Kafka redelivered some
    assert total(samples, "faust_inference_cache_hits_total") >= N_GOOD
    assert total(samples, "faust_inference_cache_misses_total") >= N_GOOD
    cost = total(samples, "faust_inference_estimated_cost_total")
    assert cost == pytest.approx(0.002 * ok_requests)


@pytest.mark.embeddings
async def test_tokens_and_their_cost_are_counted_from_a_real_servers_usage(embeddings, registry):
    observer = PrometheusObserver(
        registry=CollectorRegistry(), prices={"minilm": {"input_per_million": 20.0}}
    )
    registry.hooks.add(observer)
    model = registry.register(
        "minilm",
        provider="openai",
        endpoint=embeddings.url,
        remote_name=embeddings.model_name,
        task="embedding",
        batch_size=8,
    )
    sentences = [f"Sentence number {i} about the weather in spring." for i in range(24)]
    await model.predict_many(sentences)
    _, samples = parse(observer.render().decode())
    tokens = total(samples, "faust_inference_input_tokens_total", model="minilm")
    assert tokens >= 24 * 8  # at least eight tokens a sentence
    assert total(samples, "faust_inference_estimated_cost_total") == pytest.approx(
        tokens * 20.0 / 1e6
    )
    assert total(samples, "faust_inference_requests_total", outcome="ok") >= 3
