"""Evaluation against labels: live over tumbling windows, or offline over a range of a topic.

Labels arrive on their own topic, keyed like the scored events. Live, each
prediction waits for its label in a Faust table keyed by the event key (so
the labels topic must be co-partitioned with the scored stream: same key,
same number of partitions); entries older than ``ttl`` seconds are removed
and counted as unmatched, and at most ``max_pending`` wait per worker, so
memory stays bounded. A matched pair is counted in the tumbling window of
the label's arrival, per version.

The figures are those of scikit-learn on the same pairs (the tests check it):

* classification: accuracy; precision, recall and F1 of the positive class
  ``"1"`` when every class seen is 0 or 1, else their macro average over the
  classes seen; log loss where outputs are probability rows;
* regression: MAE and RMSE.

Example:
    >>> w = Window(task="classification")
    >>> for p, y in [([0.2, 0.8], 1), ([0.7, 0.3], 1), ([0.9, 0.1], 0)]:
    ...     w.add(p, y)
    >>> {k: round(v, 3) for k, v in w.metrics().items()}["accuracy"]
    0.667
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faust_inference.config import Task
from faust_inference.lifecycle.shadow import predicted_class

__all__ = ["LiveEvaluation", "Window", "merged_metric"]

logger = logging.getLogger(__name__)

_EPS = 2.220446049250313e-16  # float64 epsilon: what scikit-learn clips probabilities to


@dataclass(slots=True)
class Window:
    """Prediction/label pairs of one version over one period, as mergeable sums.

    Attributes:
        task: ``classification`` or ``regression`` (others are counted only).
        n: pairs counted.
        confusion: ``"label->predicted"`` -> count.
        log_loss_sum: sum of -log p(label), over pairs with probability rows.
        log_loss_n: pairs with probability rows.
        abs_sum: sum of |prediction - label| (regression).
        sq_sum: sum of squared errors (regression).
    """

    task: Task
    n: int = 0
    confusion: dict[str, int] = field(default_factory=dict)
    log_loss_sum: float = 0.0
    log_loss_n: int = 0
    abs_sum: float = 0.0
    sq_sum: float = 0.0

    def add(self, output: Any, label: Any) -> None:
        """Count one prediction with its label."""
        self.n += 1
        if self.task == "regression":
            value = output[0] if isinstance(output, list | tuple) else output
            err = float(value) - float(label)
            self.abs_sum += abs(err)
            self.sq_sum += err * err
            return
        truth = predicted_class(label)
        cell = f"{truth}->{predicted_class(output)}"
        self.confusion[cell] = self.confusion.get(cell, 0) + 1
        if (
            isinstance(output, list | tuple)
            and len(output) > 1
            and truth.isdigit()
            and int(truth) < len(output)
        ):
            total = sum(float(p) for p in output) or 1.0
            p = min(max(float(output[int(truth)]) / total, _EPS), 1 - _EPS)
            self.log_loss_sum -= math.log(p)
            self.log_loss_n += 1

    def merge(self, other: Window) -> Window:
        """Both windows' pairs together."""
        confusion = dict(self.confusion)
        for cell, k in other.confusion.items():
            confusion[cell] = confusion.get(cell, 0) + k
        return Window(
            self.task,
            self.n + other.n,
            confusion,
            self.log_loss_sum + other.log_loss_sum,
            self.log_loss_n + other.log_loss_n,
            self.abs_sum + other.abs_sum,
            self.sq_sum + other.sq_sum,
        )

    def metrics(self) -> dict[str, float]:
        """The figures of this window (empty without pairs)."""
        if not self.n:
            return {}
        if self.task == "regression":
            return {
                "n": self.n,
                "mae": self.abs_sum / self.n,
                "rmse": math.sqrt(self.sq_sum / self.n),
            }
        pairs = [(cell.split("->", 1), k) for cell, k in self.confusion.items()]
        classes = sorted({c for (t, p), _ in pairs for c in (t, p)})
        correct = sum(k for (t, p), k in pairs if t == p)
        out: dict[str, float] = {"n": self.n, "accuracy": correct / self.n}

        def prf(c: str) -> tuple[float, float, float]:
            tp = sum(k for (t, p), k in pairs if t == c and p == c)
            fp = sum(k for (t, p), k in pairs if t != c and p == c)
            fn = sum(k for (t, p), k in pairs if t == c and p != c)
            prec = tp / (tp + fp) if tp + fp else 0.0
            rec = tp / (tp + fn) if tp + fn else 0.0
            f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
            return prec, rec, f1

        if set(classes) <= {"0", "1"}:
            out["precision"], out["recall"], out["f1"] = prf("1")
        else:
            scores = [prf(c) for c in classes]
            for i, name in enumerate(("precision", "recall", "f1")):
                out[name] = sum(s[i] for s in scores) / len(scores)
        if self.log_loss_n == self.n:
            out["log_loss"] = self.log_loss_sum / self.n
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready sums."""
        return {
            "task": self.task,
            "n": self.n,
            "confusion": dict(self.confusion),
            "log_loss_sum": self.log_loss_sum,
            "log_loss_n": self.log_loss_n,
            "abs_sum": self.abs_sum,
            "sq_sum": self.sq_sum,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Window:
        """The inverse of :meth:`as_dict`."""
        return cls(
            d["task"],
            int(d["n"]),
            {str(k): int(v) for k, v in d.get("confusion", {}).items()},
            float(d["log_loss_sum"]),
            int(d["log_loss_n"]),
            float(d["abs_sum"]),
            float(d["sq_sum"]),
        )


class LiveEvaluation:
    """Joins predictions with labels and counts them per version in tumbling windows.

    Without Faust: :meth:`predicted` stores a prediction under its event
    key, :meth:`labelled` matches a label with it. :func:`evaluate_live` wires
    it to a Faust app (a table for the waiting predictions, an agent on the
    labels topic).

    Example:
        >>> ev = LiveEvaluation("fraud", "classification", window_s=60, ttl_s=600)
        >>> ev.predicted(b"t1", "v2", [0.1, 0.9], now=0.0)
        >>> ev.labelled(b"t1", 1, now=5.0)
        True
        >>> ev.metrics("v2")["accuracy"]
        1.0

    Args:
        model: the model's name.
        task: decides the figures.
        window_s: length of the tumbling windows, in seconds.
        ttl_s: how long a prediction waits for its label.
        max_pending: predictions waiting at once; the oldest is dropped (and
            counted as unmatched) beyond it.
        windows_kept: closed windows kept per version (for the web page and CLI).
    """

    def __init__(
        self,
        model: str,
        task: Task,
        *,
        window_s: float = 60.0,
        ttl_s: float = 600.0,
        max_pending: int = 100_000,
        windows_kept: int = 10,
    ) -> None:
        self.model = model
        self.task = task
        self.window_s = window_s
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self.windows_kept = windows_kept
        self.pending: OrderedDict[bytes, tuple[str, Any, float]] = OrderedDict()
        """Event key -> (version, output, time stored); oldest first."""
        self.windows: dict[str, dict[float, Window]] = {}
        """Version -> window start -> pairs."""
        self.total: dict[str, Window] = {}
        """Version -> every pair since start."""
        self.unmatched = 0
        """Predictions that never met their label (expired or evicted)."""
        self.unknown_labels = 0
        """Labels for which no prediction was waiting."""
        self.store: Any = None
        """A Faust table mirroring :attr:`pending` (set by :func:`evaluate_live`)."""

    def predicted(self, key: bytes, version: str, output: Any, *, now: float | None = None) -> None:
        """A prediction to be matched with the label of the same key."""
        now = time.time() if now is None else now
        self.pending.pop(key, None)
        self.pending[key] = (version, output, now)
        while len(self.pending) > self.max_pending:
            old, _ = self.pending.popitem(last=False)
            self._forget(old)
            self.unmatched += 1

    def labelled(self, key: bytes, label: Any, *, now: float | None = None) -> bool:
        """A label arrived; returns whether a prediction was waiting for it."""
        now = time.time() if now is None else now
        found = self.pending.pop(key, None)
        if found is None:
            self.unknown_labels += 1
            return False
        self._forget(key)
        version, output, _ = found
        start = now - now % self.window_s
        windows = self.windows.setdefault(version, {})
        window = windows.get(start)
        if window is None:
            window = windows[start] = Window(self.task)
            for old in sorted(windows)[: -self.windows_kept]:
                del windows[old]
        try:
            window.add(output, label)
            self.total.setdefault(version, Window(self.task)).add(output, label)
        except (TypeError, ValueError) as exc:
            logger.warning(
                "model %r: label %r not comparable with output: %s", self.model, label, exc
            )
        return True

    def expire(self, *, now: float | None = None) -> int:
        """Drop predictions older than the TTL; returns how many (counted as unmatched)."""
        now = time.time() if now is None else now
        n = 0
        while self.pending:
            key, (_, _, at) = next(iter(self.pending.items()))
            if now - at < self.ttl_s:
                break
            self.pending.popitem(last=False)
            self._forget(key)
            n += 1
        self.unmatched += n
        return n

    def _forget(self, key: bytes) -> None:
        if self.store is not None:
            self.store.pop(key.decode(errors="replace"), None)

    def metrics(self, version: str) -> dict[str, float]:
        """Figures of ``version`` over every pair since start."""
        w = self.total.get(version)
        return w.metrics() if w is not None else {}

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready, for the stats table: totals and windows per version."""
        return {
            "task": self.task,
            "window_s": self.window_s,
            "unmatched": self.unmatched,
            "unknown_labels": self.unknown_labels,
            "pending": len(self.pending),
            "total": {v: w.as_dict() for v, w in self.total.items()},
            "windows": {
                v: {f"{start:.0f}": w.as_dict() for start, w in ws.items()}
                for v, ws in self.windows.items()
            },
        }


def merged_metric(published: list[dict[str, Any]], version: str, name: str) -> float | None:
    """``name`` for ``version`` over every worker's published evaluation (None: no pairs)."""
    total: Window | None = None
    for snap in published:
        ev = snap.get("evaluation") or {}
        w = ev.get("total", {}).get(version)
        if w:
            part = Window.from_dict(w)
            total = part if total is None else total.merge(part)
    if total is None:
        return None
    return total.metrics().get(name)


def evaluate_live(
    app: Any,
    model: Any,
    labels: Any,
    *,
    label: Callable[[Any], Any] = lambda v: v["label"] if isinstance(v, dict) else v,
    window_s: float = 60.0,
    ttl_s: float = 600.0,
    max_pending: int = 100_000,
) -> LiveEvaluation:
    """Evaluate ``model`` live against the labels topic ``labels`` (call at import).

    Predictions are recorded by ``infer()`` for every result with a key; the
    labels topic must be keyed like the scored events and co-partitioned
    with them. ``label`` extracts the label from a label event.
    """
    from faust_inference.lifecycle.plane import lifecycle

    plane = lifecycle(app)
    ev = LiveEvaluation(
        model.name, model.settings.task, window_s=window_s, ttl_s=ttl_s, max_pending=max_pending
    )
    plane.evaluations[model.name] = ev
    topic = app.topic(labels, value_serializer="json") if isinstance(labels, str) else labels

    async def match_labels(stream: Any) -> None:
        async for event in stream.events():
            key = event.key
            raw = key if isinstance(key, bytes) else str(key).encode()
            ev.labelled(raw, label(event.value))

    app.agent(topic, name=f"faust-inference-labels-{model.name}")(match_labels)

    async def expire() -> None:
        ev.expire()

    app.timer(min(ttl_s, 10.0))(expire)
    return ev
