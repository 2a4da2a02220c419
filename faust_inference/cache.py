"""The result cache in a Faust table: durable, moved with partitions, replay-safe.

``app.model(..., cache=True)`` keeps each result in a changelog-backed table
named ``faust-inference-cache-<model>``. A worker that takes over a
partition (after a crash, a rebalance or a redeploy) recovers that
partition's entries from the changelog before its agents read an event, so
an event delivered again is answered from the table, not from the model.

**Which table.** A Faust :class:`~faust.Table` is partitioned like the
stream it serves: an entry is written to the changelog partition of the
event that produced it, and a worker holds only the partitions it consumes.
That is the co-partitioning rule: the table must have as many partitions as
the source topic (``CacheSettings(partitions=...)``, default the app's
``topic_partitions``; it is checked on the first event), and a hit needs the
repeated input to arrive on the same partition: true for a replayed event,
and for any stream keyed by what determines the input (a document id, a
user id). When equal inputs may arrive on any partition (the same sentence
from many users), use ``CacheSettings(table="global")``: a
:class:`~faust.GlobalTable` that every worker holds in full, at the cost of
every worker reading every write.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from faust_inference.config import CacheSettings, ModelSettings
from faust_inference.core.cache import ResultCache
from faust_inference.core.runner import InferenceRunner
from faust_inference.exceptions import ConfigurationError

if TYPE_CHECKING:
    from faust.tables.base import Collection
    from faust.types import AppT

__all__ = ["TableStore", "table_cache"]


class TableStore:
    """A :class:`~faust_inference.core.cache.CacheStore` over a Faust Table or GlobalTable.

    Writes go to the table's local store and, explicitly, to its changelog
    (``Table.send_changelog``) with the source event's partition: the
    pipeline records results from callbacks, outside Faust's stream
    iteration, where ``table[key] = value`` could not tell the partition.
    Faust flushes the producer before it commits offsets, so an entry is on
    the broker before the offset of the event that produced it is committed.
    """

    def __init__(self, table: Collection, *, partitioned: bool) -> None:
        self.table = table
        self.partitioned = partitioned
        self.on_recover: Any = None

    def get(self, key: str) -> dict[str, Any] | None:
        """The entry for ``key``, if this worker holds it."""
        entry = self.table.data.get(key)
        return entry if isinstance(entry, dict) else None

    def put(self, key: str, entry: dict[str, Any], partition: int | None) -> bool:
        """Store ``entry`` locally and in the changelog.

        A partitioned table cannot place a write without the event's
        partition (``predict()`` outside a stream): such writes are skipped.
        """
        if self.partitioned and partition is None:
            return False
        self.table.data[key] = entry
        self.table.send_changelog(partition if self.partitioned else None, key, entry)
        return True

    def delete(self, key: str, partition: int | None) -> None:
        """Remove ``key`` locally and write its tombstone, when the partition is known."""
        self.table.data.pop(key, None)
        if partition is not None or not self.partitioned:
            self.table.send_changelog(
                partition if self.partitioned else None, key, None, value_serializer="raw"
            )

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every entry this worker holds."""
        return iter(list(self.table.data.items()))

    def verify_source(self, topic: str) -> None:
        """Check that a partitioned table is co-partitioned with ``topic``.

        ``infer()`` calls it on the first event of each topic.

        Raises:
            ConfigurationError: the partition counts differ.
        """
        if not self.partitioned:
            return
        consumer = self.table.app.consumer
        source = consumer.topic_partitions(topic)
        mine = consumer.topic_partitions(self.table.changelog_topic_name) or (
            self.table.partitions or self.table.app.conf.topic_partitions
        )
        if source is not None and source != mine:
            raise ConfigurationError(
                f"the cache table {self.table.name!r} has {mine} partitions but the source "
                f"topic {topic!r} has {source}: a partitioned cache must be co-partitioned "
                f"with its stream. Pass cache=CacheSettings(partitions={source}), or "
                "CacheSettings(table='global') when inputs do not follow the stream's key"
            )


def table_cache(app: AppT, runner: InferenceRunner, settings: CacheSettings) -> ResultCache:
    """The result cache of one model, in a new table of ``app``.

    Called at registration, before the worker starts: Faust only recovers
    tables that exist when it does.
    """
    model: ModelSettings = runner.settings
    name = f"faust-inference-cache-{model.name}"
    # No key_type/value_type: Faust then encodes keys and values as JSON,
    # which is what the entries are.
    common: dict[str, Any] = {"help": f"faust-inference result cache of model {model.name!r}"}
    if settings.table == "global":
        # Faust's own advice for GlobalTables with several workers (see
        # faust.tables.globaltable): one partition, recovery one by one.
        table = app.GlobalTable(
            name, partitions=settings.partitions or 1, recovery_buffer_size=1, **common
        )
    else:
        table = app.Table(name, partitions=settings.partitions, **common)
    from faust.tables.base import Collection

    assert isinstance(table, Collection)  # TableT declares neither data nor send_changelog
    store = TableStore(table, partitioned=settings.table == "partitioned")
    cache = ResultCache(runner, settings, store)

    async def relearn_order() -> None:
        cache.rebuild()

    table.on_recover(relearn_order)
    store.on_recover = relearn_order  # keep the callback alive with the store
    return cache


def require_same_partitions(cache: ResultCache, topic: str) -> None:
    """Check a partitioned cache against a source topic (no-op for other stores)."""
    store = cache.store
    if isinstance(store, TableStore):
        store.verify_source(topic)
