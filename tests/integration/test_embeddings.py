"""The openai provider against a real embeddings server (infinity-emb, all-MiniLM-L6-v2)."""

import math

import pytest

from faust_inference import InvalidInput
from tests.integration.support import Collector, Worker, produce, scoring_topics

pytestmark = pytest.mark.embeddings

SENTENCES = [
    "I love playing the guitar in the evening.",
    "Playing guitar at night is my favourite thing.",
    "The central bank raised interest rates again.",
    "Quarterly earnings beat analyst expectations.",
]


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_batched_embeddings_are_real_and_in_order(embeddings, registry):
    model = registry.register(
        "minilm",
        provider="openai",
        endpoint=embeddings.url,
        remote_name=embeddings.model_name,
        task="embedding",
        batch_size=16,
        batch_timeout=0.05,
    )
    vectors = await model.predict_many(SENTENCES)
    assert [len(v) for v in vectors] == [384] * 4
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-3) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > 0.5 > cosine(vectors[0], vectors[2])
    assert cosine(vectors[2], vectors[3]) > cosine(vectors[1], vectors[3])
    alone = await model.predict(SENTENCES[2])
    assert alone == pytest.approx(vectors[2], abs=1e-4)  # batching does not change the answer


async def test_bad_input_is_rejected_before_sending(embeddings, registry):
    model = registry.register(
        "minilm", provider="openai", endpoint=embeddings.url, task="embedding"
    )
    with pytest.raises(InvalidInput, match="non-empty string"):
        await model.predict("")


async def test_a_worker_embeds_a_topic(kafka, embeddings, tmp_path):
    names = scoring_topics(kafka, in_partitions=2)
    env = {
        **names,
        "KAFKA_BROKER": kafka.url,
        "MODEL_URL": embeddings.url,
        "MODEL_PROVIDER": "openai",
        "MODEL_TASK": "embedding",
        "MODEL_REMOTE_NAME": embeddings.model_name,
        "BATCH_SIZE": "16",
        "MAX_CONCURRENCY": "4",
    }
    sent = [{"id": f"s{i}", "x": f"{SENTENCES[i % 4]} ({i})"} for i in range(60)]
    sent.append({"id": "bad", "x": 42})
    worker = Worker("tests.integration.apps.scoring", env, tmp_path).start()
    try:
        async with Collector(kafka.bootstrap, names["OUT_TOPIC"], names["DLQ_TOPIC"]) as seen:
            await produce(kafka.bootstrap, names["IN_TOPIC"], sent, key=lambda e: e["id"])
            out, dlq = seen.records[names["OUT_TOPIC"]], seen.records[names["DLQ_TOPIC"]]
            await seen.wait_for(lambda: len(out) + len(dlq) >= len(sent), 120, workers=[worker])
    finally:
        worker.stop()
    assert {r["id"] for r in out} == {e["id"] for e in sent} - {"bad"}
    assert all(len(r["output"]) == 384 for r in out)
    assert [d["event"]["id"] for d in dlq] == ["bad"]
    assert dlq[0]["error_class"] == "InvalidInput"
