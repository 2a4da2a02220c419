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

from typing import Any

from faust_inference.lifecycle.control import bootstrap_servers, read_topic
from faust_inference.lifecycle.evaluation import Window

__all__ = ["evaluate_offline"]


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
    for key, value in await read_topic(bootstrap, labels, missing_ok=False):
        by_key[key] = value.get(label_field) if isinstance(value, dict) else value
    pairs = [
        (registered.prepare(v), by_key[k])
        for k, v in await read_topic(bootstrap, events, limit=limit, missing_ok=False)
        if k in by_key
    ]
    outputs = await runner.predict_many(x for x, _ in pairs)
    window = Window(registered.settings.task)
    for output, (_, label) in zip(outputs, pairs, strict=True):
        window.add(output, label)
    return {"model": model, "version": version, **window.metrics()}
