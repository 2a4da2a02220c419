"""Per-version request figures: counts, errors and a latency histogram, mergeable.

Every worker counts the requests of each (model, version) it sends, as an
:class:`InferenceHooks` observer; the figures are published to the stats
table (see :mod:`faust_inference.lifecycle.control`) so that the rollout
controller, the CLI and the web page see the sum over every worker. Latency
is kept as counts in fixed, logarithmic buckets (about 10% wide), so that
figures from several workers add up and a p99 can be read from the sum.

Example:
    >>> f = Figures()
    >>> for ms in (10, 12, 11, 250):
    ...     f.record(ms / 1000, error=False)
    >>> f.requests, round(f.p99_s, 2)  # within a bucket (about 10%) of 250 ms
    (4, 0.27)
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from typing_extensions import override

from faust_inference.config import ModelSettings
from faust_inference.core.hooks import InferenceHooks
from faust_inference.results import Usage

__all__ = ["BOUNDS", "Figures", "VersionStatsObserver"]

BOUNDS: tuple[float, ...] = tuple(0.0005 * 1.1**i for i in range(120))
"""Upper bounds of the latency buckets, in seconds: 0.5 ms to about 45 s."""


@dataclass(slots=True)
class Figures:
    """Requests, errors and latencies of one version over some period.

    Attributes:
        requests: request attempts sent (a batch is one request).
        errors: attempts that failed.
        events: events answered (one per input of a successful batch).
        hist: latency bucket index -> attempts (see :data:`BOUNDS`).
    """

    requests: int = 0
    errors: int = 0
    events: int = 0
    hist: dict[int, int] = field(default_factory=dict)

    def record(self, duration_s: float, *, error: bool, batch: int = 1) -> None:
        """Count one request attempt."""
        self.requests += 1
        if error:
            self.errors += 1
        else:
            self.events += batch
        i = bisect.bisect_left(BOUNDS, duration_s)
        self.hist[i] = self.hist.get(i, 0) + 1

    @property
    def error_rate(self) -> float:
        """Failed attempts over all attempts (0 without any)."""
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of latency, in seconds, to the bucket's upper bound."""
        total = sum(self.hist.values())
        if not total:
            return math.nan
        rank = q * total
        seen = 0
        for i in sorted(self.hist):
            seen += self.hist[i]
            if seen >= rank:
                return BOUNDS[i] if i < len(BOUNDS) else math.inf
        return math.inf

    @property
    def p99_s(self) -> float:
        """The 99th percentile of latency, in seconds (NaN without requests)."""
        return self.quantile(0.99)

    def merge(self, other: Figures) -> Figures:
        """The figures of both periods (or workers) together."""
        hist = dict(self.hist)
        for i, n in other.hist.items():
            hist[i] = hist.get(i, 0) + n
        return Figures(
            self.requests + other.requests,
            self.errors + other.errors,
            self.events + other.events,
            hist,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (histogram keys as strings)."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "events": self.events,
            "hist": {str(k): v for k, v in self.hist.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figures:
        """The inverse of :meth:`as_dict`."""
        return cls(
            int(data.get("requests", 0)),
            int(data.get("errors", 0)),
            int(data.get("events", 0)),
            {int(k): int(v) for k, v in data.get("hist", {}).items()},
        )


class VersionStatsObserver(InferenceHooks):
    """Counts each (model, version)'s requests, twice: since start and since a mark.

    The rollout controller judges a step by the requests made since that step
    began; :meth:`mark` starts a new period for one model (every worker does
    it when it sees a new step in the routing state).

    Example:
        >>> obs = VersionStatsObserver()
        >>> obs.mark("fraud", "v2@1@0")
        >>> obs.period["fraud"]
        {}
    """

    def __init__(self) -> None:
        self.total: dict[tuple[str, str], Figures] = {}
        """(model, version) -> figures since the worker started."""
        self.period: dict[str, dict[str, Figures]] = {}
        """model -> version -> figures since :meth:`mark`."""
        self.period_id: dict[str, str] = {}
        """model -> the id given to :meth:`mark` (a rollout step)."""

    def mark(self, model: str, period_id: str) -> None:
        """Start counting a new period for ``model`` (no-op if it is the current one)."""
        if self.period_id.get(model) != period_id:
            self.period_id[model] = period_id
            self.period[model] = {}

    @override
    def on_request_end(
        self,
        settings: ModelSettings,
        batch_size: int,
        duration_s: float,
        error: BaseException | None,
        usage: Usage | None,
    ) -> None:
        version = settings.version or "-"
        error_ = error is not None
        key = (settings.name, version)
        total = self.total.get(key)
        if total is None:
            total = self.total[key] = Figures()
        total.record(duration_s, error=error_, batch=batch_size)
        period = self.period.setdefault(settings.name, {})
        figures = period.get(version)
        if figures is None:
            figures = period[version] = Figures()
        figures.record(duration_s, error=error_, batch=batch_size)
