"""TableStore against a stand-in for the few Faust Table members it uses.

The real table, changelog and recovery are exercised on the broker in
tests/integration/test_cache.py; this checks which partition each write and
tombstone goes to, and the co-partitioning check's message.
"""

import pytest

from faust_inference import ConfigurationError
from faust_inference.cache import TableStore


class Consumer:
    def __init__(self, partitions):
        self.partitions = partitions

    def topic_partitions(self, topic):
        return self.partitions.get(topic)


class App:
    def __init__(self, partitions):
        self.consumer = Consumer(partitions)
        self.conf = type("Conf", (), {"topic_partitions": 8})()


class Table:
    """Only the members TableStore touches: data, send_changelog, names, partitions."""

    def __init__(self, partitions=None, topics=None):
        self.data = {}
        self.sent = []
        self.name = "faust-inference-cache-m"
        self.changelog_topic_name = "app-faust-inference-cache-m-changelog"
        self.partitions = partitions
        self.app = App(topics or {})

    def send_changelog(self, partition, key, value, value_serializer=None):
        self.sent.append((partition, key, value))


def test_a_partitioned_store_writes_to_the_events_partition():
    table = Table()
    store = TableStore(table, partitioned=True)
    assert store.put("k", {"output": 1, "at": 0.0}, 3)
    assert table.sent == [(3, "k", {"output": 1, "at": 0.0})]
    assert store.get("k") == {"output": 1, "at": 0.0}
    store.delete("k", 3)
    assert table.sent[-1] == (3, "k", None)
    assert store.get("k") is None


def test_a_partitioned_store_skips_writes_without_a_partition():
    table = Table()
    store = TableStore(table, partitioned=True)
    assert not store.put("k", {"output": 1, "at": 0.0}, None)
    assert table.sent == [] and table.data == {}


def test_a_global_store_lets_the_producer_choose_the_partition():
    table = Table()
    store = TableStore(table, partitioned=False)
    assert store.put("k", {"output": 1, "at": 0.0}, 3)
    store.delete("k", None)
    assert [p for p, _, _ in table.sent] == [None, None]


def test_co_partitioning_mismatch_names_both_counts_and_the_fix():
    table = Table(topics={"orders": 4, "app-faust-inference-cache-m-changelog": 8})
    store = TableStore(table, partitioned=True)
    with pytest.raises(ConfigurationError) as caught:
        store.verify_source("orders")
    message = str(caught.value)
    assert "8 partitions" in message and "has 4" in message
    assert "CacheSettings(partitions=4)" in message and "table='global'" in message


def test_co_partitioned_topics_pass_and_global_tables_are_not_checked():
    table = Table(topics={"orders": 4, "app-faust-inference-cache-m-changelog": 4})
    TableStore(table, partitioned=True).verify_source("orders")
    mismatched = Table(topics={"orders": 4, "app-faust-inference-cache-m-changelog": 1})
    TableStore(mismatched, partitioned=False).verify_source("orders")
