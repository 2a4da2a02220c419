"""The co-partitioning check of live evaluation (the worker-side wiring is tested on the broker)."""

from types import SimpleNamespace

import pytest

from faust_inference.exceptions import ConfigurationError
from faust_inference.lifecycle.labels import _Copartitioned


def checker(partitions_by_topic, table_partitions=None):
    consumer = SimpleNamespace(topic_partitions=partitions_by_topic.get)
    app = SimpleNamespace(consumer=consumer, conf=SimpleNamespace(topic_partitions=4))
    table = SimpleNamespace(name="faust-inference-pending-fraud", partitions=table_partitions)
    return _Copartitioned(app, table, "fraud", "labels")


async def test_a_labels_topic_with_other_partitions_is_refused_with_the_fix():
    with pytest.raises(ConfigurationError) as err:
        await checker({"labels": 2}).verify("labels")
    message = str(err.value)
    assert "'faust-inference-pending-fraud' with 4 partitions" in message
    assert "labels topic 'labels' has 2" in message
    assert "evaluate_live(..., partitions=2)" in message


async def test_co_partitioned_topics_pass():
    check = checker({"labels": 8, "scored": 8}, table_partitions=8)
    await check.verify("labels")
    await check.verify("scored")
    with pytest.raises(ConfigurationError, match="scored topic 'other' has 4"):
        await checker({"other": 4}, table_partitions=8).verify("other")
