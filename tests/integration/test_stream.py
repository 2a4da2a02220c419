"""A real Faust worker scoring a Kafka topic through a real MLServer."""

import pytest

from examples.fraud_detection.train import make_transactions
from faust_inference import ModelRegistry
from tests.integration.support import Collector, Worker, produce, scoring_topics

N_EVENTS = 400
BAD_EVERY = 100


def scoring_env(kafka, model_url, **extra):
    names = scoring_topics(kafka)
    return {
        **names,
        "KAFKA_BROKER": kafka.url,
        "MODEL_URL": model_url,
        "MODEL_VERSION": "v1",
        "MODEL_OPTIONS": '{"input_name": "features", "shape": [10]}',
        **extra,
    }


def events(n, bad_every):
    rows, _ = make_transactions(n, seed=11)
    for i, row in enumerate(rows):
        yield {"id": f"e{i:05d}", "x": row[:7] if i % bad_every == bad_every - 1 else row}


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_every_event_is_scored_in_order_or_dead_lettered(kafka, mlserver, tmp_path, ordered):
    env = scoring_env(kafka, mlserver.url, ORDERED="1" if ordered else "0")
    sent = list(events(N_EVENTS, BAD_EVERY))
    bad = {e["id"] for e in sent if len(e["x"]) != 10}
    worker = Worker("tests.integration.apps.scoring", env, tmp_path).start()
    try:
        async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
            await produce(kafka.bootstrap, env["IN_TOPIC"], sent, key=lambda e: e["id"])
            out, dlq = seen.records[env["OUT_TOPIC"]], seen.records[env["DLQ_TOPIC"]]
            await seen.wait_for(lambda: len(out) + len(dlq) >= N_EVENTS, 120, workers=[worker])
    finally:
        worker.stop()

    scored = {r["id"] for r in out}
    dead = {r["event"]["id"] for r in dlq}
    assert scored | dead == {e["id"] for e in sent}
    assert dead == bad and not scored & dead
    letter = dlq[0]
    assert letter["error_class"] == "InvalidInput" and letter["attempts"] == 0
    assert "expected a row of shape [10], got shape [7]" in letter["error"]
    assert letter["model"] == "model" and letter["version"] == "v1"
    assert letter["topic"] == env["IN_TOPIC"] and letter["offset"] is not None

    # Per source partition, results were sent in offset order.
    by_partition = {}
    for r in out:
        by_partition.setdefault(r["partition"], []).append(r["offset"])
    assert len(by_partition) == 4
    if ordered:
        for offsets in by_partition.values():
            assert offsets == sorted(offsets)

    # The scores are the model's: compare a sample with direct calls.
    registry = ModelRegistry()
    direct = registry.register(
        "direct", provider="kserve", endpoint=mlserver.url, remote_name="fraud"
    )
    x_by_id = {e["id"]: e["x"] for e in sent}
    for r in out[:: len(out) // 5]:
        assert await direct.predict(x_by_id[r["id"]]) == pytest.approx(r["output"], abs=1e-12)
    await registry.aclose()


async def test_an_agent_that_raises_dead_letters_that_event_and_goes_on(kafka, mlserver, tmp_path):
    env = scoring_env(kafka, mlserver.url, RAISE_ON="e00010,e00150")
    sent = list(events(200, 10_000))
    worker = Worker("tests.integration.apps.scoring", env, tmp_path).start()
    try:
        async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
            await produce(kafka.bootstrap, env["IN_TOPIC"], sent, key=lambda e: e["id"])
            out, dlq = seen.records[env["OUT_TOPIC"]], seen.records[env["DLQ_TOPIC"]]
            await seen.wait_for(lambda: len(out) + len(dlq) >= 200, 120, workers=[worker])
        worker.assert_alive()
    finally:
        worker.stop()
    assert sorted(d["event"]["id"] for d in dlq) == ["e00010", "e00150"]
    assert {d["error_class"] for d in dlq} == {"RuntimeError"}
    assert "agent bug on e00010" in {d["error"] for d in dlq}
    assert {r["id"] for r in out} == {e["id"] for e in sent} - {"e00010", "e00150"}
