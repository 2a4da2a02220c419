"""Offline evaluation: replay a range of a topic through one version, against labels.

``faust -A app inference evaluate NAME --version V --events TOPIC --labels TOPIC``
reads up to ``limit`` events from the start of ``TOPIC`` (JSON values), the
labels topic to its end, pairs them by key, calls version ``V`` for every
paired event (with the model's preprocessor, limits, batching and retries)
and prints the same figures as live evaluation
(:class:`~faust_inference.lifecycle.evaluation.Window`).

Example::

    metrics = await evaluate_offline(app, lifecycle(app), "fraud", "v2",
                                     events="transactions", labels="labels")
    metrics["f1"]
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from faust_inference.lifecycle.control import bootstrap_servers
from faust_inference.lifecycle.evaluation import Window

__all__ = ["evaluate_offline", "read_topic"]


async def read_topic(
    bootstrap: str, topic: str, *, limit: int, wait_s: float = 30.0
) -> list[tuple[bytes | None, Any]]:
    """Up to ``limit`` records of ``topic`` from its start, as (key, decoded JSON value)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    out: list[tuple[bytes | None, Any]] = []
    try:
        parts = await consumer.partitions_for_topic(topic) or set()
        if not parts:
            raise SystemExit(f"topic {topic!r} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + wait_s
        while remaining and len(out) < limit:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took more than {wait_s:g}s")
            batches = await consumer.getmany(*remaining, timeout_ms=200)
            for tp, records in batches.items():
                for r in records:
                    if r.offset < ends[tp] and len(out) < limit:
                        out.append((r.key, orjson.loads(r.value) if r.value else None))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


async def evaluate_offline(
    app: Any,
    plane: Any,
    model: str,
    version: str,
    *,
    events: str,
    labels: str,
    limit: int = 100_000,
    label_field: str = "label",
) -> dict[str, Any]:
    """Figures of ``version`` of ``model`` on the labelled events of a topic range."""
    bootstrap = bootstrap_servers(app)
    registered = app.inference[model]
    runner = plane.model_versions(model).runner(version)
    by_key: dict[bytes | None, Any] = {}
    for key, value in await read_topic(bootstrap, labels, limit=10 * limit):
        by_key[key] = value.get(label_field) if isinstance(value, dict) else value
    pairs = [
        (registered.prepare(v), by_key[k])
        for k, v in await read_topic(bootstrap, events, limit=limit)
        if k in by_key
    ]
    outputs = await runner.predict_many(x for x, _ in pairs)
    window = Window(registered.settings.task)
    for output, (_, label) in zip(outputs, pairs, strict=True):
        window.add(output, label)
    return {"model": model, "version": version, **window.metrics()}
