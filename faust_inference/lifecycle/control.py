"""The control topic: every model's routing, shared by every worker and the command line.

Routing lives in a compacted Kafka topic, one record per model keyed by its
name, whose value is the whole :class:`~faust_inference.lifecycle.routing.RoutingState`
(the last changes included, as the audit trail). Workers read it into a
Faust :class:`~faust.GlobalTable` (every worker holds all of it, recovers it
before its agents start, and keeps reading it while running), so a change
written by anyone reaches every worker without a restart, and survives
restarts and replays. The topic is that table's changelog,
``<app id>-faust-inference-control-changelog``.

Writers (the CLI, the web API, code, the rollout controller) go through one
path, :class:`ControlClient`: read the model's latest state, apply a
:class:`~faust_inference.lifecycle.routing.Change`, write the new state. No
worker needs to run in the shell that issues a change.

A second table, ``faust-inference-stats``, carries what each worker saw
(request figures per version, shadow agreement, evaluation windows), one
record per model and worker, so the rollout controller, the CLI and the web
page see the sum over every worker.

Example::

    client = ControlClient.for_app(app)
    state = await client.change("fraud", Change.switch("v2", reason="v2 is better"),
                                versions=("v1", "v2"), default="v1")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson

from faust_inference.exceptions import ConfigurationError
from faust_inference.lifecycle.routing import Change, RoutingState

__all__ = [
    "CONTROL_TABLE",
    "STATS_TABLE",
    "ControlClient",
    "bootstrap_servers",
    "changelog_topic",
    "read_topic",
]

logger = logging.getLogger(__name__)

CONTROL_TABLE = "faust-inference-control"
"""Name of the GlobalTable holding every model's routing state."""
STATS_TABLE = "faust-inference-stats"
"""Name of the GlobalTable holding each worker's figures per model."""


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    limit: int | None = None,
    wait_s: float = 30.0,
    missing_ok: bool = True,
) -> list[tuple[bytes | None, Any]]:
    """Records of ``topic`` from its start to its end now, as (key, decoded JSON value).

    Args:
        bootstrap: Kafka bootstrap servers.
        topic: the topic to read.
        limit: stop after this many records (all partitions together).
        wait_s: give up (TimeoutError) after this many seconds.
        missing_ok: a missing topic reads as empty; otherwise ConfigurationError.
    """
    from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[tuple[bytes | None, Any]] = []
    try:
        if topic not in await consumer.topics():
            if missing_ok:
                return out
            raise ConfigurationError(f"topic {topic!r} does not exist: check its name")
        deadline = time.monotonic() + wait_s
        # Subscribing (without a group) loads the topic's metadata and
        # assigns every partition; assign() would need the partitions first.
        consumer.subscribe([topic])
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no partitions of {topic} after {wait_s:g}s")
            await asyncio.sleep(0.05)
        tps = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining and (limit is None or len(out) < limit):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took more than {wait_s:g}s")
            batches = await consumer.getmany(*remaining, timeout_ms=200)
            for tp, records in batches.items():
                for r in records:
                    if r.offset < ends[tp] and (limit is None or len(out) < limit):
                        out.append((r.key, orjson.loads(r.value) if r.value else None))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


def changelog_topic(app_id: str, table: str) -> str:
    """The Kafka topic behind a Faust table (Faust's own naming)."""
    return f"{app_id}-{table}-changelog"


def bootstrap_servers(app: Any) -> str:
    """``host:port,...`` from a Faust app's ``broker`` setting (``kafka://h:p;...``)."""
    urls = app.conf.broker
    return ",".join(f"{u.host}:{u.port or 9092}" for u in urls)


class ControlClient:
    """Reads and writes the control topic directly with aiokafka.

    Used by every writer, inside a worker or not; workers read through their
    GlobalTable instead. Changes to one model are read-modify-write: two
    changes issued at the same instant may race, the last one written wins
    (each names its revision in the log line).

    Example::

        async with ControlClient("127.0.0.1:9092", "fraud-app") as client:
            states = await client.read()

    Args:
        bootstrap: Kafka bootstrap servers, ``host:port[,host:port]``.
        app_id: the Faust app's id, which names the topics.
        replication_factor: used when the topic must be created.
    """

    def __init__(self, bootstrap: str, app_id: str, *, replication_factor: int = 1) -> None:
        self.bootstrap = bootstrap
        self.app_id = app_id
        self.topic = changelog_topic(app_id, CONTROL_TABLE)
        self.stats_topic = changelog_topic(app_id, STATS_TABLE)
        self.replication_factor = replication_factor
        self._producer: Any = None
        self._lock = asyncio.Lock()
        self._known_topics: set[str] = set()

    @classmethod
    def for_app(cls, app: Any) -> ControlClient:
        """The client for a Faust app's control topic."""
        return cls(
            bootstrap_servers(app),
            app.conf.id,
            replication_factor=app.conf.topic_replication_factor,
        )

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the producer, if one was started."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    # -- reading -------------------------------------------------------------------

    async def read(self, topic: str | None = None) -> dict[str, Any]:
        """The latest value per key of ``topic`` (default: the control topic), decoded JSON.

        Reads from the beginning to the end offsets seen at the start; a topic
        that does not exist yet reads as empty.
        """
        latest: dict[str, Any] = {}
        for raw_key, value in await read_topic(self.bootstrap, topic or self.topic):
            key = orjson.loads(raw_key) if raw_key else None
            if not isinstance(key, str):
                continue
            if value is None:
                latest.pop(key, None)
            else:
                latest[key] = value
        return latest

    async def states(self) -> dict[str, RoutingState]:
        """Every model's routing state on the topic."""
        return {k: RoutingState.model_validate(v) for k, v in (await self.read()).items()}

    # -- writing -------------------------------------------------------------------

    async def change(
        self,
        model: str,
        change: Change,
        *,
        versions: tuple[str, ...],
        default: str,
        expect_revision: int | None = None,
    ) -> RoutingState:
        """Apply ``change`` to ``model``'s latest state and write the result.

        Args:
            model: the model's name.
            change: what to do.
            versions: the versions registered in the app (what may be named).
            default: the default version when the model has no record yet.
            expect_revision: write only if the latest state is this revision
                (the rollout controller's decisions: a decision about a state
                someone has changed since is dropped, and the latest state
                returned unchanged).

        Raises:
            ConfigurationError: the change names an unknown version, or is
                otherwise invalid (nothing is written).
        """
        async with self._lock:
            raw = (await self.read()).get(model)
            state = (
                RoutingState.initial(model, default, versions=versions)
                if raw is None
                else RoutingState.model_validate(raw).with_versions(versions)
            )
            if expect_revision is not None and state.revision != expect_revision:
                logger.info(
                    "model %r: %s dropped: decided on revision %d, the latest is %d",
                    model,
                    change.describe(),
                    expect_revision,
                    state.revision,
                )
                return state
            new = state.apply(change)
            await self.write(new)
        logger.info(
            "model %r: revision %d: %s (from %s)",
            model,
            new.revision,
            change.describe(),
            change.source,
        )
        return new

    async def write(self, state: RoutingState) -> None:
        """Write one model's whole state (replaces the previous record)."""
        await self.put(self.topic, state.model, state.model_dump(mode="json"))

    async def put(self, topic: str, key: str, value: Mapping[str, Any]) -> None:
        """Write one JSON record to ``topic`` (partition 0: the tables have one)."""
        producer = await self._started()
        await self._ensure_topic(topic)
        await producer.send_and_wait(
            topic, key=orjson.dumps(key), value=orjson.dumps(value), partition=0
        )

    async def _started(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
            await producer.start()
            self._producer = producer
        return self._producer

    async def _ensure_topic(self, topic: str) -> None:
        """Create the compacted topic as Faust would, when no worker has yet."""
        if topic in self._known_topics:
            return
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
        from aiokafka.errors import TopicAlreadyExistsError  # type: ignore[import-untyped]

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            if topic not in existing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(
                        [
                            NewTopic(
                                topic,
                                num_partitions=1,
                                replication_factor=self.replication_factor,
                                topic_configs={"cleanup.policy": "compact"},
                            )
                        ]
                    )
        finally:
            await admin.close()
        self._known_topics.add(topic)


def require_versions(model: str, wanted: Mapping[str, object], known: tuple[str, ...]) -> None:
    """Fail early, naming the versions, when a command names an unknown one."""
    unknown = [v for v in wanted if v not in known]
    if unknown:
        raise ConfigurationError(
            f"model {model!r} has no version {', '.join(map(repr, unknown))}; "
            f"registered: {', '.join(known)}"
        )
