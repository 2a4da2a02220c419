"""Drift alerts: is the stream still the data the model was trained for?

A :class:`DriftMonitor` keeps rolling histograms of a model's output and of
named numeric input features in a windowed Faust table (tumbling windows,
changelog-backed), compares each complete window with a reference by the
population stability index (PSI), exports the PSI as a metric, and sends an
alert event to a topic when it crosses a threshold::

    drift = DriftMonitor(
        app, fraud,
        features={"amount": lambda tx: tx.amount},
        output=lambda out: out[1],                  # p(fraud)
        reference={"amount": training_amounts},     # bins: the reference's deciles
        bins={"output": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]},
        window=300, threshold=0.2, alerts="fraud.drift",
    )

    @app.agent(transactions)
    @infer(fraud, dead_letter="transactions.dlq")
    async def score(results):
        async for r in results:
            drift.observe(r)                          # in the agent: table writes
            ...

PSI = Σ (observed% - reference%) · ln(observed% / reference%) over the bins;
the usual reading is < 0.1 stable, 0.1-0.25 moving, > 0.25 shifted.

Table keys are ``"<feature>|<partition>"`` (with Faust's window range):
each key is only written for events of its own partition, so the changelog
stays co-partitioned with the stream (the table needs as many partitions as
the source topic). ``infer()`` hands results to the agent outside Faust's
stream iteration, so writes go to the table's store and, explicitly, to its
changelog with the event's partition; windows older than four are deleted
(with tombstones) by the checks. Samples are
counted in memory and written to the table at most every ``flush_interval``
seconds per partition (one changelog record per feature, not per event); a
crash loses at most that much of the statistics, never an event. Each worker
checks the partitions it holds, so with several workers the PSI is per
worker. A feature without reference samples takes the first complete window
(with at least ``min_samples``) as its reference, kept in memory.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from faust_inference.app import RemoteModel, install
from faust_inference.exceptions import ConfigurationError
from faust_inference.results import InferenceResult

if TYPE_CHECKING:
    from faust.tables.base import Collection
    from faust.types import AppT, TopicT

__all__ = ["DriftMonitor", "population_stability_index", "quantile_cuts"]

logger = logging.getLogger(__name__)

OUTPUT = "output"
"""The feature name under which the model's output is tracked."""
_EPSILON = 1e-4
"""Stands in for an empty bin's share, so that the logarithm stays finite."""


def population_stability_index(reference: Sequence[float], observed: Sequence[float]) -> float:
    """PSI of two histograms over the same bins (counts or shares).

    Example:
        >>> round(population_stability_index([50, 50], [80, 20]), 3)
        0.416
    """
    ref_total, obs_total = float(sum(reference)), float(sum(observed))
    if ref_total <= 0 or obs_total <= 0:
        return 0.0
    psi = 0.0
    for r, o in zip(reference, observed, strict=True):
        expected = max(r / ref_total, _EPSILON)
        actual = max(o / obs_total, _EPSILON)
        psi += (actual - expected) * math.log(actual / expected)
    return psi


def quantile_cuts(samples: Sequence[float], bins: int = 10) -> list[float]:
    """Cut points that split ``samples`` into ``bins`` bins of equal count.

    Example:
        >>> quantile_cuts(range(100), 4)
        [25, 50, 75]
    """
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("no reference samples")
    cuts = [ordered[len(ordered) * i // bins] for i in range(1, bins)]
    return sorted(set(cuts))


def histogram(samples: Sequence[float], cuts: Sequence[float]) -> list[int]:
    """Counts per bin: bin ``i`` holds values in ``[cuts[i-1], cuts[i])``."""
    counts = [0] * (len(cuts) + 1)
    for x in samples:
        counts[bisect.bisect_right(cuts, x)] += 1
    return counts


class DriftMonitor:
    """Rolling distributions of one model's output and inputs, checked against a reference.

    Create it at import time, like a Faust table (it defines one, and a
    timer); call :meth:`observe` with each result inside the agent.

    Args:
        app: the Faust app (``install(app)`` is applied if it was not).
        model: the model whose events are observed.
        features: input features: name -> function of the event returning a number.
        output: a number from the model's output (``out[1]`` for p(class 1));
            None does not track the output.
        reference: reference samples by feature name (``"output"`` for the
            output), e.g. from the training set.
        bins: cut points by feature, or the number of equal-count bins cut
            from the reference samples.
        window: the size of a tumbling window, in seconds.
        threshold: the PSI above which an alert is sent.
        min_samples: windows with fewer samples are not judged.
        alerts: the topic (name or Faust topic) that receives alert events.
        check_interval: how often windows are checked; default a tenth of ``window``.
        flush_interval: longest time samples stay in memory before the table gets them.
        partitions: partitions of the table's changelog: those of the source topic
            (default: the app's ``topic_partitions``).
        name: the table's name (default ``"<model>-drift"``).
    """

    def __init__(
        self,
        app: AppT,
        model: RemoteModel,
        *,
        features: Mapping[str, Callable[[Any], float]] | None = None,
        output: Callable[[Any], float] | None = None,
        reference: Mapping[str, Sequence[float]] | None = None,
        bins: Mapping[str, Sequence[float]] | int = 10,
        window: float = 300.0,
        threshold: float = 0.2,
        min_samples: int = 100,
        alerts: str | TopicT | None = None,
        check_interval: float | None = None,
        flush_interval: float = 1.0,
        partitions: int | None = None,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.window = float(window)
        self.threshold = threshold
        self.min_samples = min_samples
        self.flush_interval = flush_interval
        self._hooks = install(app).hooks
        self._extract: dict[str, Callable[[Any], float]] = dict(features or {})
        if output is not None:
            self._extract[OUTPUT] = output
        if not self._extract:
            raise ConfigurationError("DriftMonitor needs at least one feature or the output")
        reference = reference or {}
        self.cuts: dict[str, list[float]] = {}
        self.reference: dict[str, list[int]] = {}
        for feature in self._extract:
            given = bins.get(feature) if isinstance(bins, Mapping) else None
            samples = reference.get(feature)
            if given is not None:
                self.cuts[feature] = sorted(given)
            elif samples:
                self.cuts[feature] = quantile_cuts(samples, bins if isinstance(bins, int) else 10)
            else:
                raise ConfigurationError(
                    f"drift of {feature!r}: give reference samples or bin cut points"
                )
            if samples:
                self.reference[feature] = histogram(samples, self.cuts[feature])
        self.partitions = partitions or app.conf.topic_partitions
        self.table = app.Table(
            name or f"{model.name}-drift",
            default=list,
            partitions=self.partitions,
        ).tumbling(self.window, expires=self.window * 4)
        from faust.tables.base import Collection

        windowed = self.table.table
        assert isinstance(windowed, Collection)  # TableT does not declare data
        self.windows: WindowStore = WindowStore(windowed)
        self.alerts: TopicT | None = (
            app.topic(alerts, value_serializer="json") if isinstance(alerts, str) else alerts
        )
        self._buffers: dict[int, tuple[float, dict[str, list[int]]]] = {}
        self._flushed: dict[int, float] = {}
        self._checked: float = -math.inf
        app.timer(check_interval or self.window / 10, name=f"{model.name}-drift-check")(self._tick)

    # -- in the agent ----------------------------------------------------------------

    def observe(self, result: InferenceResult[Any]) -> None:
        """Count one result's features and output (call it inside the agent)."""
        if not result.ok:
            return
        partition = result.partition or 0
        now = time.time()
        entry = self._buffers.get(partition)
        if entry is None:
            entry = self._buffers[partition] = (
                now,
                {f: [0] * (len(c) + 1) for f, c in self.cuts.items()},
            )
        started, counts = entry
        for feature, extract in self._extract.items():
            try:
                value = float(extract(result.output if feature == OUTPUT else result.event))
            except (TypeError, ValueError, KeyError, AttributeError, IndexError):
                continue  # not a number: nothing to count
            counts[feature][bisect.bisect_right(self.cuts[feature], value)] += 1
        if now - started >= self.flush_interval or self._window_of(now) != self._window_of(started):
            self.flush(partition)

    def flush(self, partition: int) -> None:
        """Add the counts kept in memory for ``partition`` to the table's window."""
        entry = self._buffers.pop(partition, None)
        if entry is None:
            return
        started, counts = entry
        for feature, new in counts.items():
            if any(new):
                self.windows.add(f"{feature}|{partition}", partition, started, new)

    # -- checks (a timer on every worker) --------------------------------------------

    def window_counts(self, feature: str, timestamp: float) -> list[int]:
        """The histogram of ``feature`` in the window holding ``timestamp``, over partitions."""
        total = [0] * (len(self.cuts[feature]) + 1)
        for partition in range(self.partitions):
            counts = self.windows.get(f"{feature}|{partition}", timestamp)
            if counts:
                total = [a + b for a, b in zip(total, counts, strict=True)]
        return total

    def check(self, now: float | None = None) -> list[dict[str, Any]]:
        """Judge the last complete window, once; returns the alerts it raises."""
        now = time.time() if now is None else now
        # A window is judged once its last samples have surely left memory.
        start = self._window_of(now - self.flush_interval) - self.window
        if start <= self._checked:
            return []
        self._checked = start
        self.windows.expire(start - 3 * self.window)
        alerts = []
        settings = self.model.settings
        for feature in self._extract:
            observed = self.window_counts(feature, start)
            samples = sum(observed)
            if samples < self.min_samples:
                continue
            reference = self.reference.get(feature)
            if reference is None:
                self.reference[feature] = observed
                logger.info("drift of %r: reference taken from the window at %.0f", feature, start)
                continue
            psi = population_stability_index(reference, observed)
            alert = psi > self.threshold
            self._hooks.on_drift(settings, feature, psi, alert)
            if alert:
                logger.warning(
                    "model %r: %s drifted, PSI %.3f > %.3f",
                    settings.name,
                    feature,
                    psi,
                    self.threshold,
                )
                alerts.append(
                    {
                        "model": settings.name,
                        "version": settings.version,
                        "feature": feature,
                        "psi": round(psi, 6),
                        "threshold": self.threshold,
                        "window_start": start,
                        "window_end": start + self.window,
                        "samples": samples,
                        "cuts": self.cuts[feature],
                        "reference": _shares(reference),
                        "observed": _shares(observed),
                    }
                )
        return alerts

    async def _tick(self) -> None:
        for alert in self.check():
            if self.alerts is not None:
                await self.alerts.send(key=f"{alert['model']}|{alert['feature']}", value=alert)

    def _window_of(self, timestamp: float) -> float:
        return math.floor(timestamp / self.window) * self.window


class WindowStore:
    """Tumbling windows of a Faust table, written from outside stream iteration.

    Keys are Faust's own for windowed tables, ``(key, (start, end))``, so the
    changelog recovers like any windowed table's.

    Args:
        table: the Faust table under the window wrapper (``wrapper.table``).
    """

    def __init__(self, table: Collection) -> None:
        if table.window is None:
            raise ConfigurationError(f"table {table.name!r} is not windowed: call .tumbling()")
        self.table = table
        self.window = table.window

    def get(self, key: str, timestamp: float) -> list[int]:
        """The counts of ``key`` in the window holding ``timestamp``."""
        counts = self.table.data.get((key, self.window.current(timestamp)))
        return list(counts) if counts else []

    def add(self, key: str, partition: int, timestamp: float, counts: list[int]) -> None:
        """Add ``counts`` to ``key``'s window holding ``timestamp``, and to the changelog."""
        table = self.table
        full = (key, self.window.current(timestamp))
        old = table.data.get(full)
        new = counts if not old else [a + b for a, b in zip(old, counts, strict=True)]
        table.data[full] = new
        table.send_changelog(partition, full, new)

    def expire(self, before: float) -> None:
        """Delete the windows that ended before ``before``."""
        table = self.table
        for full in list(table.data.keys()):
            try:
                key, (_, end) = full
                partition = int(key.rsplit("|", 1)[1])
            except (TypeError, ValueError, IndexError):
                continue  # not one of ours
            if end < before:
                table.data.pop(full, None)
                table.send_changelog(partition, full, None, value_serializer="raw")


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts) or 1
    return [round(c / total, 6) for c in counts]
