"""Ask the product index a question: the nearest products, best first.

    python -m examples.rag_embeddings.query "something to keep me dry on a hike"

The question is embedded by the same model the worker uses (``EMBEDDINGS_URL``,
``EMBEDDINGS_MODEL``) and compared with every indexed product (``RAG_INDEX``),
while the worker may still be writing the file. This is the retrieval half of
a shopping assistant: the hits are what a chat model would be given as context.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from examples.rag_embeddings.store import Hit, ProductIndex
from faust_inference import ModelRegistry

__all__ = ["ask"]


async def ask(
    question: str, *, index_path: str, endpoint: str, model: str, k: int = 5
) -> list[Hit]:
    """The ``k`` indexed products nearest to ``question``."""
    registry = ModelRegistry()
    try:
        minilm = registry.register(
            "minilm",
            provider="openai",
            endpoint=endpoint,
            remote_name=model,
            task="embedding",
            timeout=10.0,
            retries=2,
        )
        vector = await minilm.predict(question)
    finally:
        await registry.aclose()
    index = ProductIndex(index_path)
    try:
        return index.nearest(vector, k)
    finally:
        index.close()


def show(question: str, hits: list[Hit]) -> None:
    """Print the hits as a small table, with cosine similarity (1: same meaning)."""
    print(f"? {question}")
    for hit in hits:
        similarity = 1 - hit.distance
        print(f"  {similarity:5.3f}  {hit.id}  {hit.name:<46} {hit.category:<14} {hit.price:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("-k", type=int, default=5, help="how many products")
    parser.add_argument("--index", default=os.environ.get("RAG_INDEX", "products.db"))
    parser.add_argument(
        "--endpoint", default=os.environ.get("EMBEDDINGS_URL", "http://127.0.0.1:7997/v1")
    )
    parser.add_argument("--model", default=os.environ.get("EMBEDDINGS_MODEL", "all-MiniLM-L6-v2"))
    args = parser.parse_args()
    hits = asyncio.run(
        ask(
            args.question, index_path=args.index, endpoint=args.endpoint, model=args.model, k=args.k
        )
    )
    show(args.question, hits)


if __name__ == "__main__":
    main()
