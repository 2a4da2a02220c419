"""Evaluation against labels: live over tumbling windows, or offline over a range of a topic.

Labels arrive on their own topic, keyed like the scored events. Live, each
prediction waits for its label in a store keyed by the event key: in a
worker, a changelog-backed Faust table co-partitioned with the scored stream
and the labels topic (see :mod:`faust_inference.lifecycle.labels`), so a
prediction made before a restart or a rebalance still meets its label.
Entries older than ``ttl`` seconds are removed and counted as unmatched, and
at most ``max_pending`` wait per worker, so memory stays bounded. A matched
pair is counted in the tumbling window of the label's arrival, per version;
windows start at multiples of their length in Unix time, so the same window
of every worker adds up (:func:`merged_evaluation`).

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

import base64
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faust_inference.config import Task
from faust_inference.core.cache import CacheStore, MemoryStore
from faust_inference.lifecycle.shadow import predicted_class

__all__ = [
    "LiveEvaluation",
    "MergedEvaluation",
    "Window",
    "merged_evaluation",
    "merged_metric",
    "store_key",
]

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

    The predictions waiting for their label live in a :class:`CacheStore`:
    a dict of this process by default, a changelog-backed Faust table once
    :func:`evaluate_live` wires it to an app (so a prediction survives a
    restart or a rebalance: the worker that takes its partition recovers it).
    This object keeps, beside the store, the order in which the waiting
    predictions were made, for the TTL and the bound.

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
        max_pending: predictions waiting at once in this worker; the oldest
            is dropped (and counted as unmatched) beyond it.
        windows_kept: closed windows kept per version (for the web page and CLI).
        store: where waiting predictions live (default: a dict of this process).
        owned: the partitions this worker owns now (None: all); predictions of
            other partitions are their owner's to match, expire and count.
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
        store: CacheStore | None = None,
        owned: Callable[[], set[int] | None] | None = None,
    ) -> None:
        self.model = model
        self.task = task
        self.window_s = window_s
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self.windows_kept = windows_kept
        self.store: CacheStore = store if store is not None else MemoryStore()
        self.owned = owned
        self._order: OrderedDict[str, tuple[float, int | None]] = OrderedDict()
        """Store key -> (time made, partition) of every waiting prediction, oldest first."""
        self.windows: dict[str, dict[float, Window]] = {}
        """Version -> window start -> pairs."""
        self.total: dict[str, Window] = {}
        """Version -> every pair since start."""
        self.unmatched = 0
        """Predictions that never met their label (expired or evicted)."""
        self.unknown_labels = 0
        """Labels for which no prediction was waiting."""
        self.invalid_labels = 0
        """Label events without a key or a label (skipped)."""
        self.check_source: Callable[[str], None] | None = None
        """Called with the topic of each scored event (the co-partitioning check)."""
        self.on_recover: Any = None

    @property
    def waiting(self) -> int:
        """Predictions waiting for their label in this worker."""
        return len(self._order)

    def predicted(
        self,
        key: bytes | str,
        version: str,
        output: Any,
        *,
        partition: int | None = None,
        now: float | None = None,
    ) -> None:
        """A prediction to be matched with the label of the same key.

        Args:
            key: the scored event's key.
            version: the version that answered.
            output: its answer.
            partition: the scored event's partition, which is also the
                table's (co-partitioned); a table store skips writes without one.
            now: Unix time (default: now).
        """
        now = time.time() if now is None else now
        k = store_key(key)
        entry = {"version": version, "output": output, "at": now, "p": partition}
        if not self.store.put(k, entry, partition):
            return
        self._order.pop(k, None)
        self._order[k] = (now, partition)
        while len(self._order) > self.max_pending:
            old, (_, p) = self._order.popitem(last=False)
            self._drop(old, p)

    def labelled(self, key: bytes | str, label: Any, *, now: float | None = None) -> bool:
        """A label arrived; returns whether a prediction was waiting for it."""
        now = time.time() if now is None else now
        k = store_key(key)
        found = self.store.get(k)
        if found is None:
            self.unknown_labels += 1
            return False
        self._order.pop(k, None)
        self.store.delete(k, found.get("p"))
        version, output = str(found["version"]), found["output"]
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
        while self._order:
            key, (at, partition) = next(iter(self._order.items()))
            if now - at < self.ttl_s:
                break
            self._order.popitem(last=False)
            n += self._drop(key, partition)
        return n

    def rebuild(self) -> None:
        """Relearn the waiting predictions from the store (after a table recovery).

        Called when this worker's partitions change: predictions of
        partitions it now owns (made by any worker, before a restart or a
        rebalance) wait here again; those of partitions it lost are
        forgotten locally, for their new owner to match.
        """
        owned = self.owned() if self.owned is not None else None
        entries: list[tuple[float, str, int | None]] = []
        for k, entry in self.store.items():
            p = entry.get("p")
            if owned is not None and p not in owned:
                self.store.delete(k, None)  # local only: not this worker's to tombstone
                continue
            entries.append((float(entry.get("at", 0.0)), k, p))
        entries.sort()
        self._order = OrderedDict((k, (at, p)) for at, k, p in entries)

    def _drop(self, key: str, partition: int | None) -> int:
        """Forget an unmatched prediction: counted (1) if this worker owns it, else 0."""
        owned = self.owned() if self.owned is not None else None
        if owned is not None and partition not in owned:
            self.store.delete(key, None)
            return 0
        self.store.delete(key, partition)
        self.unmatched += 1
        return 1

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
            "invalid_labels": self.invalid_labels,
            "pending": self.waiting,
            "total": {v: w.as_dict() for v, w in self.total.items()},
            "windows": {
                v: {f"{start:.0f}": w.as_dict() for start, w in ws.items()}
                for v, ws in self.windows.items()
            },
        }


def store_key(key: bytes | str) -> str:
    """The table key of an event key: its text, or base64 when it is not UTF-8."""
    if isinstance(key, str):
        return key
    try:
        return key.decode()
    except UnicodeDecodeError:
        return "b64:" + base64.b64encode(key).decode()


@dataclass(slots=True)
class MergedEvaluation:
    """Every worker's published evaluation of one model, summed.

    Windows are aligned on multiples of ``window_s`` in Unix time, so the
    same window of two workers has the same start and adds up.

    Attributes:
        total: version -> every pair since each worker started.
        windows: version -> window start -> pairs of that window.
        unmatched: predictions expired or evicted without their label.
        unknown_labels: labels with no prediction waiting.
        invalid_labels: label events without a key or a label.
        pending: predictions waiting now (live workers only).
        window_s: the windows' length (None: no worker published one).
    """

    total: dict[str, Window] = field(default_factory=dict)
    windows: dict[str, dict[float, Window]] = field(default_factory=dict)
    unmatched: int = 0
    unknown_labels: int = 0
    invalid_labels: int = 0
    pending: int = 0
    window_s: float | None = None

    def report(self, *, windows_kept: int = 10) -> dict[str, Any]:
        """JSON-ready figures: per version since start, and per window (newest first)."""
        return {
            "versions": {v: w.metrics() for v, w in self.total.items()},
            "window_s": self.window_s,
            "windows": {
                v: [
                    {"start": start, **ws[start].metrics()}
                    for start in sorted(ws, reverse=True)[:windows_kept]
                ]
                for v, ws in self.windows.items()
            },
            "unmatched": self.unmatched,
            "unknown_labels": self.unknown_labels,
            "invalid_labels": self.invalid_labels,
            "pending": self.pending,
        }


def merged_evaluation(
    published: list[dict[str, Any]], *, live: list[dict[str, Any]] | None = None
) -> MergedEvaluation:
    """Sum the evaluation every worker published (its stats-table record).

    Args:
        published: every worker's latest record, stopped workers included
            (the pairs they counted still count).
        live: the records of running workers, whose waiting predictions are
            summed (default: all of ``published``).
    """
    out = MergedEvaluation()
    for snap in published:
        ev = snap.get("evaluation") or {}
        if not ev:
            continue
        out.window_s = float(ev.get("window_s") or 0) or out.window_s
        out.unmatched += int(ev.get("unmatched", 0))
        out.unknown_labels += int(ev.get("unknown_labels", 0))
        out.invalid_labels += int(ev.get("invalid_labels", 0))
        for v, w in ev.get("total", {}).items():
            part = Window.from_dict(w)
            out.total[v] = out.total[v].merge(part) if v in out.total else part
        for v, ws in ev.get("windows", {}).items():
            mine = out.windows.setdefault(v, {})
            for start, w in ws.items():
                part, at = Window.from_dict(w), float(start)
                mine[at] = mine[at].merge(part) if at in mine else part
    for snap in published if live is None else live:
        out.pending += int((snap.get("evaluation") or {}).get("pending", 0))
    return out


def merged_metric(
    published: list[dict[str, Any]], version: str, name: str, *, since: float | None = None
) -> float | None:
    """``name`` for ``version`` over every worker's published evaluation (None: no pairs).

    Args:
        published: every worker's latest stats record.
        version: the version judged.
        name: a figure of :meth:`Window.metrics` (``f1``, ``mae`` ...).
        since: count only windows that end after this Unix time (a rollout
            step's start), instead of every pair since start.
    """
    merged = merged_evaluation(published)
    if since is None:
        total = merged.total.get(version)
    else:
        span = merged.window_s or 0.0
        total = None
        for start, w in merged.windows.get(version, {}).items():
            if start + span > since:
                total = w if total is None else total.merge(w)
    if total is None or not total.n:
        return None
    return total.metrics().get(name)
