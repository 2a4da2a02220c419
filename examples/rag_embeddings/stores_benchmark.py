"""Measure embedded vector stores the way the RAG example uses one.

    python -m examples.rag_embeddings.stores_benchmark [--vectors 10000] [--runs 3]

Needs every candidate installed (they are not project dependencies)::

    pip install lancedb qdrant-client sqlite-vec apsw usearch numpy

For each store: upsert ``--vectors`` 384-dim unit vectors (the size
all-MiniLM-L6-v2 returns) with a product id and name, in batches of
``--batch`` as a stream worker writes them, on disk in a temporary folder;
then ``--queries`` nearest-5 queries one at a time. Prints, per store, the
median over ``--runs`` runs (and the min-max spread) of the upsert rate and
of the median and p95 query latency, and the recall@5 against an exact
search. The vectors are random (seeded): the costs measured do not depend
on what the vectors mean.

Why these candidates: each runs inside the worker process, with no server
to operate. sqlite-vec needs a SQLite that can load extensions; CPython's
``sqlite3`` module often cannot (it cannot on this project's machines), so
it is driven through ``apsw``, which bundles its own SQLite.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

DIM = 384
K = 5


class Store(Protocol):
    def upsert(self, ids: list[int], vectors: Any, names: list[str]) -> None: ...
    def query(self, vector: Any, k: int) -> list[int]: ...
    def close(self) -> None: ...


class Lance:
    def __init__(self, path: Path) -> None:
        import lancedb
        import pyarrow as pa

        self.pa = pa
        self.db = lancedb.connect(str(path))
        self.schema = pa.schema(
            [
                ("id", pa.int64()),
                ("name", pa.string()),
                ("vector", pa.list_(pa.float32(), DIM)),
            ]
        )
        self.table = self.db.create_table("products", schema=self.schema)

    def upsert(self, ids: list[int], vectors: Any, names: list[str]) -> None:
        rows = [
            {"id": i, "name": n, "vector": v}
            for i, n, v in zip(ids, names, vectors.tolist(), strict=True)
        ]
        (
            self.table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(rows)
        )

    def query(self, vector: Any, k: int) -> list[int]:
        hits = self.table.search(vector).distance_type("cosine").limit(k).to_list()
        return [int(h["id"]) for h in hits]

    def close(self) -> None:
        pass


class Qdrant:
    def __init__(self, path: Path) -> None:
        from qdrant_client import QdrantClient, models

        self.models = models
        self.client = QdrantClient(path=str(path))
        self.client.create_collection(
            "products",
            vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        )

    def upsert(self, ids: list[int], vectors: Any, names: list[str]) -> None:
        points = [
            self.models.PointStruct(id=i, vector=v, payload={"name": n})
            for i, n, v in zip(ids, names, vectors.tolist(), strict=True)
        ]
        self.client.upsert("products", points=points)

    def query(self, vector: Any, k: int) -> list[int]:
        hits = self.client.query_points("products", query=vector.tolist(), limit=k).points
        return [int(h.id) for h in hits]

    def close(self) -> None:
        self.client.close()


class SqliteVec:
    def __init__(self, path: Path) -> None:
        import apsw
        import sqlite_vec

        self.db = apsw.Connection(str(path / "products.db"))
        self.db.enable_load_extension(True)
        self.db.load_extension(sqlite_vec.loadable_path())
        self.db.execute(
            f"CREATE VIRTUAL TABLE products USING vec0("
            f"id INTEGER PRIMARY KEY, vector float[{DIM}] distance_metric=cosine, name TEXT)"
        )

    def upsert(self, ids: list[int], vectors: Any, names: list[str]) -> None:
        # vec0 has no UPSERT: delete, then insert, in one transaction.
        with self.db:
            self.db.executemany("DELETE FROM products WHERE id = ?", [(i,) for i in ids])
            self.db.executemany(
                "INSERT INTO products(id, vector, name) VALUES (?, ?, ?)",
                [
                    (i, v.astype(np.float32).tobytes(), n)
                    for i, n, v in zip(ids, names, vectors, strict=True)
                ],
            )

    def query(self, vector: Any, k: int) -> list[int]:
        rows = self.db.execute(
            "SELECT id FROM products WHERE vector MATCH ? AND k = ? ORDER BY distance",
            (vector.astype(np.float32).tobytes(), k),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def close(self) -> None:
        self.db.close()


class USearch:
    def __init__(self, path: Path) -> None:
        from usearch.index import Index

        self.path = path / "products.usearch"
        self.index = Index(ndim=DIM, metric="cos", dtype="f32")
        self.names: dict[int, str] = {}  # usearch keeps vectors only: payload elsewhere

    def upsert(self, ids: list[int], vectors: Any, names: list[str]) -> None:
        keys = np.asarray(ids, dtype=np.uint64)
        present = [i for i in ids if i in self.index]
        if present:
            self.index.remove(np.asarray(present, dtype=np.uint64))
        self.index.add(keys, vectors.astype(np.float32))
        self.names.update(zip(ids, names, strict=True))

    def query(self, vector: Any, k: int) -> list[int]:
        return [int(x) for x in self.index.search(vector.astype(np.float32), k).keys]

    def close(self) -> None:
        self.index.save(str(self.path))  # durable only when saved


STORES: dict[str, Callable[[Path], Store]] = {
    "LanceDB": Lance,
    "Qdrant (local mode)": Qdrant,
    "sqlite-vec (apsw)": SqliteVec,
    "usearch": USearch,
}


def run_once(
    factory: Callable[[Path], Store], vectors: Any, queries: Any, batch: int
) -> tuple[float, float, float, float]:
    """One run: (upserts/s, median query ms, p95 query ms, recall@K)."""
    names = [f"product {i}" for i in range(len(vectors))]
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :K]
    with tempfile.TemporaryDirectory(prefix="vs-bench-") as tmp:
        store = factory(Path(tmp))
        started = time.perf_counter()
        for lo in range(0, len(vectors), batch):
            ids = list(range(lo, min(lo + batch, len(vectors))))
            store.upsert(ids, vectors[lo : lo + batch], names[lo : lo + batch])
        upsert_rate = len(vectors) / (time.perf_counter() - started)
        latencies: list[float] = []
        hits = 0
        for q, truth in zip(queries, exact, strict=True):
            t0 = time.perf_counter()
            found = store.query(q, K)
            latencies.append((time.perf_counter() - t0) * 1000)
            hits += len(set(found) & {int(t) for t in truth})
        store.close()
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    return upsert_rate, statistics.median(latencies), p95, hits / (K * len(queries))


def spread(values: list[float], fmt: str) -> str:
    mid, low, high = (format(v, fmt) for v in (statistics.median(values), min(values), max(values)))
    return f"{mid} ({low}-{high})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100, help="vectors per upsert")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="store names to run")
    args = parser.parse_args()

    rng = np.random.default_rng(42)
    vectors = rng.standard_normal((args.vectors, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((args.queries, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    print(
        f"{args.vectors} vectors of {DIM} dims, upserted {args.batch} at a time; "
        f"{args.queries} queries for the nearest {K}; median of {args.runs} runs (min-max)\n"
    )
    print("| store | upserts/s | query p50 ms | query p95 ms | recall@5 |")
    print("|---|---|---|---|---|")
    for name, factory in STORES.items():
        if args.only and not any(o.lower() in name.lower() for o in args.only):
            continue
        runs = [run_once(factory, vectors, queries, args.batch) for _ in range(args.runs)]
        rate, p50, p95, recall = (list(col) for col in zip(*runs, strict=True))
        print(
            f"| {name} | {spread(rate, ',.0f')} | {spread(p50, '.2f')} | "
            f"{spread(p95, '.2f')} | {statistics.median(recall):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
