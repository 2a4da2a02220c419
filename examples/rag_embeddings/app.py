"""Keep a product index for a shopping assistant fresh: embed every product update.

Run it as any Faust app::

    KAFKA_BROKER=kafka://127.0.0.1:9092 EMBEDDINGS_URL=http://127.0.0.1:7997/v1 \
        RAG_INDEX=/tmp/products.db faust -A examples.rag_embeddings.app worker -l info

Each update on ``product-updates`` (keyed by product id) is turned into one
text (name, category, description), embedded by all-MiniLM-L6-v2 behind any
OpenAI-compatible ``/embeddings`` endpoint (here infinity), in batches of up
to 16, and written with the product's details to the index file
(:mod:`examples.rag_embeddings.store`). Most updates change only the price or
the stock: their text is one the model has already embedded, and the
model's result cache (a Faust table keyed by a digest of the text) answers
without a call. Each indexed update is reported on ``product-indexed``;
updates that cannot be embedded land in ``product-updates.dlq`` with the
reason.

The cache is a partitioned table, co-partitioned with ``product-updates``:
a product's updates share its key, so they reach the worker that holds its
cache entries. Ask with ``python -m examples.rag_embeddings.query``.
"""

from __future__ import annotations

import os
from typing import Any

import faust

from examples.rag_embeddings.store import ProductIndex
from faust_inference import infer, install

app = faust.App(
    os.environ.get("RAG_APP_ID", "rag-embeddings"),
    broker=os.environ.get("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    topic_partitions=4,
)
install(app)

MODEL_URL = os.environ.get("EMBEDDINGS_URL", "http://127.0.0.1:7997/v1")
MODEL_NAME = os.environ.get("EMBEDDINGS_MODEL", "all-MiniLM-L6-v2")


class ProductUpdate(faust.Record, serializer="json"):
    id: str
    name: str
    category: str
    description: str
    price: float
    stock: int


minilm = app.model(
    "minilm",
    provider="openai",  # any OpenAI-compatible /embeddings endpoint
    endpoint=MODEL_URL,
    remote_name=MODEL_NAME,
    task="embedding",
    batch_size=16,
    batch_timeout=0.02,
    max_concurrency=4,
    timeout=10.0,
    retries=3,
    cache=True,  # a repeated text costs no call, also after a restart
)


@minilm.preprocess
def product_text(update: ProductUpdate) -> str:
    """What a shopper's question is compared with: everything but price and stock."""
    return f"{update.name} ({update.category}). {update.description}"


updates = app.topic("product-updates", value_type=ProductUpdate)
indexed = app.topic("product-indexed", value_serializer="json")

_index: ProductIndex | None = None


def product_index() -> ProductIndex:
    """The index file, opened on first use (importing this module opens nothing)."""
    global _index
    if _index is None:
        _index = ProductIndex(os.environ.get("RAG_INDEX", "products.db"))
    return _index


@app.agent(updates)
@infer(minilm, dead_letter="product-updates.dlq")
async def index_products(results: Any) -> None:
    async for r in results:
        product = r.event.asdict()
        product_index().upsert(product, r.output)
        await indexed.send(
            key=r.event.id,
            value={
                "id": r.event.id,
                "name": r.event.name,
                "cached": r.cached,
                "latency_ms": round(r.latency_s * 1000, 2),
            },
        )
