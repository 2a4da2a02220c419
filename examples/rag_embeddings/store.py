"""The product index: each product's latest vector and details in one SQLite file.

Chosen by measurement (``stores_benchmark.py``, numbers in the README): the
`sqlite-vec <https://github.com/asg017/sqlite-vec>`_ extension keeps the
vectors in a ``vec0`` virtual table next to the product's name, category and
price, so an upsert is one transaction and a query returns everything to
show. It is exact (brute force, fast enough at catalog sizes), durable on
every commit, and other processes can read the file while the worker writes
it (the ``query`` command does). CPython's ``sqlite3`` module cannot load
extensions on many builds, so the file is opened with ``apsw``, which
bundles its own SQLite.

Example:
    >>> index = ProductIndex("/tmp/products.db")  # doctest: +SKIP
    >>> index.upsert({"id": "p-1", "name": "Tent", "category": "tents",
    ...               "description": "...", "price": 120.0}, vector)
    >>> index.nearest(vector, k=1)[0].id
    'p-1'
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DIMENSION", "Hit", "ProductIndex"]

DIMENSION = 384
"""Length of all-MiniLM-L6-v2's vectors."""


@dataclass(frozen=True)
class Hit:
    """One product found near a question, with its cosine distance (0: same direction)."""

    id: str
    name: str
    category: str
    price: float
    distance: float


class ProductIndex:
    """Products and their vectors in one SQLite file, searched by cosine distance.

    Args:
        path: the database file; created with its table if missing.
        dimension: the vectors' length.
    """

    def __init__(self, path: str | Path, dimension: int = DIMENSION) -> None:
        import apsw
        import sqlite_vec

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = apsw.Connection(str(self.path))
        self.db.enable_load_extension(True)
        self.db.load_extension(sqlite_vec.loadable_path())
        self.db.enable_load_extension(False)
        # A reader (the query command) may open the file while the worker writes.
        self.db.set_busy_timeout(5000)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS products USING vec0("
            f"id TEXT PRIMARY KEY, embedding float[{dimension}] distance_metric=cosine, "
            "+name TEXT, +category TEXT, +description TEXT, +price FLOAT)"
        )

    def upsert(self, product: Mapping[str, Any], vector: Sequence[float]) -> None:
        """Store ``product``'s latest details and vector, replacing an older one.

        Idempotent, so an event delivered twice (at least once) does no harm.
        """
        row = (
            str(product["id"]),
            array("f", vector).tobytes(),
            str(product["name"]),
            str(product["category"]),
            str(product["description"]),
            float(product["price"]),
        )
        with self.db:  # one transaction: never a product without its vector
            self.db.execute("DELETE FROM products WHERE id = ?", (row[0],))
            self.db.execute(
                "INSERT INTO products(id, embedding, name, category, description, price) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )

    def nearest(self, vector: Sequence[float], k: int = 5) -> list[Hit]:
        """The ``k`` products closest to ``vector``, nearest first."""
        rows = self.db.execute(
            "SELECT id, name, category, price, distance FROM products "
            "WHERE embedding MATCH ? AND k = ? ORDER BY distance",
            (array("f", vector).tobytes(), k),
        ).fetchall()
        return [Hit(str(i), str(n), str(c), float(p), float(d)) for i, n, c, p, d in rows]

    def get(self, product_id: str) -> dict[str, Any] | None:
        """A stored product's details, without its vector."""
        rows = self.db.execute(
            "SELECT id, name, category, description, price FROM products WHERE id = ?",
            (product_id,),
        ).fetchall()
        if not rows:
            return None
        keys = ("id", "name", "category", "description", "price")
        return dict(zip(keys, rows[0], strict=True))

    def count(self) -> int:
        """How many products are indexed."""
        return int(self.db.execute("SELECT count(*) FROM products").fetchall()[0][0])

    def close(self) -> None:
        """Close the file."""
        self.db.close()
