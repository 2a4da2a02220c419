"""Counters, request recording and the rate limiter of the fake endpoint.

Everything here runs on the event loop thread only, so plain integers and a
bounded deque are enough: no locks, and as little work per request as possible
because the endpoint must never be the bottleneck of a benchmark.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the endpoint received it, kept for format assertions.

    Attributes:
        method: HTTP method.
        path: Request path without the query string.
        query: Raw query string.
        headers: Request headers; case-insensitive (``headers["authorization"]``).
        body: Raw request body.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """Parse the body as JSON.

        Returns:
            The decoded body.

        Raises:
            orjson.JSONDecodeError: If the body is not valid JSON.
        """
        return orjson.loads(self.body)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly view (body decoded as UTF-8, lossy) for ``/_stats``."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": {str(k): v for k, v in self.headers.items()},
            "body": self.body.decode("utf-8", "replace"),
        }


@dataclass(frozen=True)
class Stats:
    """Immutable snapshot of the endpoint's counters.

    Attributes:
        total: Requests received on model routes (control routes are not counted).
        by_route: Requests per route template, e.g. ``"/v1/chat/completions"``.
        by_status: Responses sent per HTTP status (resets and stalls send none).
        faults: Injected faults per kind: ``rate_limited``, ``random_error``,
            ``status``, ``malformed``, ``reset``, ``stall``.
        rows: Rows/inputs received by handlers (chat counts 1 per request,
            embeddings one per input string, OIP the first dimension, predict
            the list length). Requests stopped by a fault never reach a handler.
        in_flight: Requests being handled when the snapshot was taken.
        peak_in_flight: Highest ``in_flight`` seen since the last reset.
        recent: The most recent requests, oldest first (bounded by ``record_limit``).
    """

    total: int
    by_route: Mapping[str, int]
    by_status: Mapping[int, int]
    faults: Mapping[str, int]
    rows: int
    in_flight: int
    peak_in_flight: int
    recent: tuple[RecordedRequest, ...]

    def to_dict(self, recent: int = 0) -> dict[str, Any]:
        """Return a JSON-friendly dict (string keys), used by ``/_stats`` and the CLI.

        Args:
            recent: How many of the most recent requests to include (0 = none),
                so a benchmark can check request formats of a subprocess endpoint.

        Returns:
            The stats as plain JSON types.
        """
        data: dict[str, Any] = {
            "total": self.total,
            "by_route": dict(self.by_route),
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "faults": dict(self.faults),
            "rows": self.rows,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
        }
        if recent > 0:
            data["recent"] = [r.to_dict() for r in self.recent[-recent:]]
        return data


class Counters:
    """Mutable counters behind `Stats`; cheap to update on every request."""

    __slots__ = (
        "by_route",
        "by_status",
        "faults",
        "in_flight",
        "peak_in_flight",
        "recent",
        "rows",
        "total",
    )

    def __init__(self, record_limit: int) -> None:
        self.total = 0
        self.rows = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.recent: deque[RecordedRequest] = deque(maxlen=record_limit)

    def begin(self, route: str) -> None:
        """Count a request arriving on ``route`` and update the in-flight peak."""
        self.total += 1
        self.by_route[route] += 1
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight

    def reset(self) -> None:
        """Zero everything except ``in_flight``, which still tracks live requests.

        The peak restarts at the current in-flight count so a test that resets
        mid-run measures only what happens afterwards.
        """
        self.total = self.rows = 0
        self.peak_in_flight = self.in_flight
        self.by_route.clear()
        self.by_status.clear()
        self.faults.clear()
        self.recent.clear()

    def resize(self, record_limit: int) -> None:
        """Change how many recent requests are kept, keeping the newest ones."""
        if self.recent.maxlen != record_limit:
            self.recent = deque(self.recent, maxlen=record_limit)

    def snapshot(self) -> Stats:
        """Copy the counters into an immutable `Stats`."""
        return Stats(
            total=self.total,
            by_route=dict(self.by_route),
            by_status=dict(self.by_status),
            faults=dict(self.faults),
            rows=self.rows,
            in_flight=self.in_flight,
            peak_in_flight=self.peak_in_flight,
            recent=tuple(self.recent),
        )


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``capacity`` stored.

    A bucket (rather than a per-second window) gives the smooth behaviour of
    real API gateways: a client pacing itself just under the rate never sees
    a 429, while a burst above the capacity does immediately.
    """

    __slots__ = ("_capacity", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self._rate = rate
        self._capacity = capacity
        self._tokens = capacity
        self._stamp = now

    def take(self, now: float) -> float:
        """Try to take one token.

        Args:
            now: Current monotonic time in seconds.

        Returns:
            0.0 if a token was taken, else the seconds until one will be available.
        """
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate
