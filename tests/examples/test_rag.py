"""The RAG-embeddings example, briefly, on the real broker and the real embeddings server.

Runs the example's own scenario (``examples/rag_embeddings/run.py``) with the
session's Kafka broker and infinity server, a real ``faust -A ... worker``
process and the real sqlite-vec index, then checks what a user would look at:
every update indexed, price-only updates answered by the cache, rewritten
descriptions embedded again and stored, and questions answered with products
of the right kind.
"""

from __future__ import annotations

import pytest

from devtools.worker import FaustWorker
from examples.rag_embeddings.run import QUESTIONS, TOPICS, scenario
from examples.rag_embeddings.store import ProductIndex

pytestmark = [pytest.mark.integration, pytest.mark.embeddings]

PRODUCTS = 32  # four of each of the eight kinds
UPDATES = 15  # every fifth rewrites a description: 3 rewritten, 12 price/stock only


async def test_updates_are_indexed_cached_and_searchable(kafka, embeddings, tmp_path):
    for topic, partitions in TOPICS.items():
        kafka.create_topic(topic, partitions=partitions)
    index_path = tmp_path / "products.db"
    env = {
        "KAFKA_BROKER": kafka.url,
        "EMBEDDINGS_URL": embeddings.url,
        "EMBEDDINGS_MODEL": embeddings.model_name,
        "RAG_INDEX": str(index_path),
    }
    worker = FaustWorker("examples.rag_embeddings.app", env, tmp_path, log_level="warn").start()
    try:
        run = await scenario(
            kafka,
            embeddings,
            index_path,
            worker,
            products=PRODUCTS,
            updates=UPDATES,
            timeout=120,
        )
    finally:
        worker.stop()
    assert run.complete, worker.log()
    assert run.dead == []
    assert len(run.indexed) == PRODUCTS + UPDATES
    rewritten = {u["id"] for u in run.updates if u["description"].endswith("New model.")}
    assert len(rewritten) == 3
    later = run.indexed[PRODUCTS:]
    # Same text as already embedded: answered by the cache; a new text: a real call.
    assert {v["id"] for v in later if v["cached"]} == {u["id"] for u in run.updates} - rewritten
    assert not any(v["cached"] for v in run.indexed[:PRODUCTS])

    index = ProductIndex(index_path)
    try:
        assert index.count() == PRODUCTS
        for update in run.updates:
            stored = index.get(update["id"])
            assert stored is not None
            assert stored["description"] == update["description"]
            assert stored["price"] == pytest.approx(update["price"], rel=1e-6)
    finally:
        index.close()

    rain, headphones, sleeping = QUESTIONS
    assert run.answers[rain][0].category == "rain jackets"
    assert run.answers[headphones][0].category == "headphones"
    assert run.answers[sleeping][0].category == "sleeping bags"
    distances = [h.distance for h in run.answers[rain]]
    assert distances == sorted(distances)
