"""Run the whole RAG-embeddings example on this machine with one command.

    python -m examples.rag_embeddings.run [--products 200] [--updates 100] [--ask "..."]

Starts a real Kafka broker and the embeddings server (infinity serving
all-MiniLM-L6-v2; both installed into ``.cache/`` on first use), starts the
Faust worker with ``faust -A examples.rag_embeddings.app worker``, sends a
product catalog, waits until every product is indexed, then sends price and
stock updates (answered by the result cache) and a few rewritten
descriptions (embedded again), and finally asks the index a few questions.
Stops everything at the end (or on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from devtools.embeddings import EmbeddingServer
from devtools.embeddings import ensure_venv as ensure_embeddings
from devtools.kafka import KafkaBroker, ensure_jars
from devtools.worker import FaustWorker
from examples.rag_embeddings.catalog import make_catalog, make_updates
from examples.rag_embeddings.producer import produce
from examples.rag_embeddings.query import ask, show
from examples.rag_embeddings.store import Hit

QUESTIONS = (
    "something to keep me dry when hiking in the rain",
    "quiet headphones for a long flight",
    "a warm bag for sleeping outside in winter",
)
TOPICS = {"product-updates": 4, "product-indexed": 1, "product-updates.dlq": 1}


def say(message: str) -> None:
    print(f"[run] {message}", flush=True)


class Watcher:
    """Reads ``product-indexed`` and the dead-letter topic in the background."""

    def __init__(self, bootstrap: str) -> None:
        self.indexed: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []
        self.shown = 0
        self._consumer = AIOKafkaConsumer(
            "product-indexed",
            "product-updates.dlq",
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=300)
            for tp, records in batches.items():
                values = [orjson.loads(r.value) for r in records]
                if tp.topic == "product-indexed":
                    self.indexed.extend(values)
                else:
                    self.dead.extend(values)
                    for v in values:
                        print(
                            f"  DLQ      {v['event'].get('id')}  {v['error_class']}: {v['error']}"
                        )

    async def wait_for(self, total: int, deadline: float, worker: FaustWorker) -> bool:
        """Print progress until ``total`` events have an outcome; False on timeout."""
        while len(self.indexed) + len(self.dead) < total:
            if time.monotonic() > deadline:
                return False
            worker.assert_alive()
            await asyncio.sleep(0.5)
            self._show_new()
        self._show_new()
        return True

    def _show_new(self) -> None:
        for v in self.indexed[self.shown :]:
            how = "cache" if v["cached"] else f"{v['latency_ms']:.0f} ms"
            print(f"  indexed  {v['id']}  {v['name']:<46} ({how})")
        self.shown = len(self.indexed)


@dataclass
class Summary:
    """What a run did: for the closing lines, and for the example's test."""

    catalog: list[dict[str, Any]]
    updates: list[dict[str, Any]]
    indexed: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, list[Hit]] = field(default_factory=dict)
    complete: bool = False

    @property
    def cached_updates(self) -> int:
        """Later updates answered by the result cache."""
        return sum(1 for v in self.indexed[len(self.catalog) :] if v["cached"])


async def scenario(
    kafka: KafkaBroker,
    embeddings: EmbeddingServer,
    index_path: Path,
    worker: FaustWorker,
    *,
    products: int,
    updates: int,
    questions: Sequence[str] = QUESTIONS,
    k: int = 3,
    timeout: float = 300.0,
) -> Summary:
    """Send the catalog, then the updates, then ask; print as it goes."""
    catalog = make_catalog(products)
    run = Summary(catalog, make_updates(catalog, updates))
    deadline = time.monotonic() + timeout
    total = len(run.catalog) + len(run.updates)
    async with Watcher(kafka.bootstrap) as seen:
        say(f"sending a catalog of {len(catalog)} products")
        await produce(kafka.bootstrap, catalog)
        if not await seen.wait_for(len(catalog), deadline, worker):
            say(f"timed out: {len(seen.indexed)} of {len(catalog)} indexed")
            return run
        rewritten = sum(1 for u in run.updates if str(u["description"]).endswith("New model."))
        say(
            f"sending {len(run.updates)} updates: {len(run.updates) - rewritten} price/stock "
            f"only, {rewritten} with a new description"
        )
        await produce(kafka.bootstrap, run.updates)
        run.complete = await seen.wait_for(total, deadline, worker)
        run.indexed, run.dead = list(seen.indexed), list(seen.dead)
    if not run.complete:
        say(f"timed out: {len(run.indexed)} of {total} indexed")
        return run
    say(
        f"{len(run.indexed)} updates indexed, {len(run.dead)} dead-lettered; of the "
        f"{len(run.updates)} later updates, {run.cached_updates} were answered by the cache "
        "(no call to the model)"
    )
    for question in questions:
        hits = await ask(
            question,
            index_path=str(index_path),
            endpoint=embeddings.url,
            model=embeddings.model_name,
            k=k,
        )
        show(question, hits)
        run.answers[question] = hits
    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=200, help="catalog size")
    parser.add_argument("--updates", type=int, default=100, help="updates after the catalog")
    parser.add_argument("--ask", action="append", default=[], help="another question to ask")
    parser.add_argument("-k", type=int, default=3, help="products per question")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for indexing")
    args = parser.parse_args(argv)

    say("preparing Kafka jars and the embeddings server (first run: a few minutes)")
    ensure_jars()
    ensure_embeddings()
    workdir = Path(tempfile.mkdtemp(prefix="rag-example-"))
    index_path = workdir / "products.db"
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with KafkaBroker() as kafka, EmbeddingServer() as embeddings:
            say(f"Kafka at {kafka.bootstrap}, embeddings at {embeddings.url}")
            for topic, partitions in TOPICS.items():
                kafka.create_topic(topic, partitions=partitions)
            env = {
                "KAFKA_BROKER": kafka.url,
                "EMBEDDINGS_URL": embeddings.url,
                "EMBEDDINGS_MODEL": embeddings.model_name,
                "RAG_INDEX": str(index_path),
            }
            worker = FaustWorker("examples.rag_embeddings.app", env, workdir, log_level="warn")
            worker.start()
            say(f"worker started (pid {worker.pid}, log {worker.log_path}, index {index_path})")
            try:
                run = asyncio.run(
                    scenario(
                        kafka,
                        embeddings,
                        index_path,
                        worker,
                        products=args.products,
                        updates=args.updates,
                        questions=[*QUESTIONS, *args.ask],
                        k=args.k,
                        timeout=args.timeout,
                    )
                )
                return 0 if run.complete else 1
            except KeyboardInterrupt:
                say("interrupted")
                return 130
            finally:
                worker.stop()  # before the broker goes: it commits on the way out
    finally:
        say("stopped the worker, the embeddings server and Kafka")


if __name__ == "__main__":
    sys.exit(main())
