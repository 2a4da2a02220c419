"""Live evaluation wired to a Faust app: the pending-predictions table and the labels agent.

:func:`evaluate_live` gives a model a :class:`~faust_inference.lifecycle.evaluation.LiveEvaluation`
whose waiting predictions live in the changelog-backed table
``faust-inference-pending-<model>``, an agent matching the labels topic
against it, and a timer expiring predictions past their TTL.

Co-partitioning is what makes it correct across workers: the scored
stream, the labels topic and the table have the same number of partitions
and the same key, so partition N of all three belongs to one worker. The
prediction is written (from ``infer()``'s result path) to the scored
event's partition of the table, and its label arrives on the same partition
of the labels topic, at the same worker; after a restart or a rebalance the
new owner recovers that partition of the table before its agents read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from faust_inference.exceptions import ConfigurationError
from faust_inference.lifecycle.evaluation import LiveEvaluation

__all__ = ["evaluate_live"]

logger = logging.getLogger(__name__)


def evaluate_live(
    app: Any,
    model: Any,
    labels: Any,
    *,
    label: Callable[[Any], Any] = lambda v: v["label"] if isinstance(v, dict) else v,
    window_s: float = 60.0,
    ttl_s: float = 600.0,
    max_pending: int = 100_000,
    partitions: int | None = None,
) -> LiveEvaluation:
    """Evaluate ``model`` live against the labels topic ``labels`` (call at import).

    Predictions are recorded by ``infer()`` for every result with a key, in
    the changelog-backed table ``faust-inference-pending-<model>``, written
    to the scored event's partition. The labels topic must be keyed like the
    scored events and co-partitioned with them and with the table (same
    number of partitions, same partitioner): Faust then gives partition N of
    all three to the same worker, which holds the predictions its labels
    need, also after a restart or a rebalance (it recovers the table's
    partitions before its agents read). Both partition counts are checked
    when the worker starts (the labels topic) and on the first scored event
    of each topic; a mismatch stops the worker with a ConfigurationError.

    Example::

        evaluate_live(app, fraud, "labels", label=lambda v: v["label"],
                      window_s=60, ttl_s=600)

    Args:
        app: the Faust app.
        model: the model (a RemoteModel) whose predictions are judged.
        labels: the labels topic (a name or a Faust topic).
        label: extracts the label from a label event's value.
        window_s: length of the tumbling windows, in seconds.
        ttl_s: how long a prediction waits for its label.
        max_pending: predictions waiting at once per worker.
        partitions: the table's partitions (default: the app's ``topic_partitions``).
    """
    from faust_inference.cache import TableStore
    from faust_inference.lifecycle.plane import lifecycle

    plane = lifecycle(app)
    topic = app.topic(labels, value_serializer="json") if isinstance(labels, str) else labels
    labels_name = topic.get_topic_name()
    table = app.Table(
        f"faust-inference-pending-{model.name}",
        partitions=partitions,
        help=f"faust-inference: predictions of {model.name!r} waiting for their label",
    )

    def owned() -> set[int]:
        # The assignor's record of this worker's active partitions: plain
        # data, unlike the consumer, which raises while it is not started.
        actives = app.assignor.assigned_actives()
        return {tp.partition for tp in actives if tp.topic == labels_name}

    ev = LiveEvaluation(
        model.name,
        model.settings.task,
        window_s=window_s,
        ttl_s=ttl_s,
        max_pending=max_pending,
        store=TableStore(table, partitioned=True),
        owned=owned,
    )
    checker = _Copartitioned(app, table, model.name, labels_name)
    ev.check_source = checker.check_soon
    plane.evaluations[model.name] = ev

    async def recovered() -> None:
        ev.rebuild()

    table.on_recover(recovered)
    ev.on_recover = recovered  # the table may hold its callbacks weakly

    async def match_labels(stream: Any) -> None:
        try:
            await checker.verify(labels_name, wait=True)
        except ConfigurationError as exc:
            from faust_inference.startup import stop_worker

            await stop_worker(app, exc)
            return
        async for event in stream.events():
            key = event.key
            if key is None:
                ev.invalid_labels += 1
                continue
            try:
                truth = label(event.value)
            except Exception as exc:  # one bad label is counted, never the worker's end
                ev.invalid_labels += 1
                logger.warning(  # the event itself is not logged: it is user data
                    "model %r: a label event (%s) has no label: %s",
                    model.name,
                    type(event.value).__name__,
                    type(exc).__name__,
                )
                continue
            ev.labelled(key if isinstance(key, bytes | str) else str(key), truth)

    app.agent(topic, name=f"faust-inference-labels-{model.name}")(match_labels)

    async def expire() -> None:
        ev.expire()

    app.timer(min(ttl_s, 10.0))(expire)
    return ev


class _Copartitioned:
    """Checks that a topic has as many partitions as the pending-predictions table."""

    def __init__(self, app: Any, table: Any, model: str, labels: str) -> None:
        self.app, self.table, self.model, self.labels = app, table, model, labels
        self.checked: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def verify(self, topic: str, *, wait: bool = False) -> None:
        """Raise ConfigurationError when ``topic``'s partitions differ from the table's."""
        consumer = self.app.consumer
        source = consumer.topic_partitions(topic)
        for _ in range(150 if wait else 0):  # metadata may come a moment later (30 s)
            if source is not None:
                break
            await asyncio.sleep(0.2)
            source = consumer.topic_partitions(topic)
        mine = self.table.partitions or self.app.conf.topic_partitions
        if source is not None and source != mine:
            role = "labels topic" if topic == self.labels else "scored topic"
            raise ConfigurationError(
                f"model {self.model!r}: live evaluation keeps predictions in the table "
                f"{self.table.name!r} with {mine} partitions, but the {role} {topic!r} has "
                f"{source}: the scored stream, the labels topic and the table must be "
                f"co-partitioned. Give every topic {mine} partitions, or pass "
                f"evaluate_live(..., partitions={source}) if all topics have {source}"
            )

    def check_soon(self, topic: str) -> None:
        """Check a scored topic once, on its first event; a mismatch stops the worker."""
        if topic in self.checked:
            return
        self.checked.add(topic)

        async def check() -> None:
            try:
                await self.verify(topic)
            except ConfigurationError as exc:
                from faust_inference.startup import stop_worker

                await stop_worker(self.app, exc)

        task = asyncio.get_running_loop().create_task(check())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
