"""Several replicas of one model behind one name: balancing, passive health, hedging.

``endpoint=["http://a:8080", "http://b:8080", "http://c:8080"]`` gives a
model three replicas. Each request goes to the replica with the fewest
requests in flight (ties rotate), so a slow replica gets less work by
itself. The pool watches the answers (passive health, no probe traffic):

- a replica that fails :attr:`~ReplicaHealthSettings.failures` times in a
  row (no answer, or 5xx), or whose recent mean latency is an outlier
  (``outlier_factor`` times the others' median), is *ejected* for
  ``eject_time`` seconds (doubled at each new ejection); then one real
  request probes it, and an answer brings it back;
- a replica that answers 429 gets no requests until its ``Retry-After``
  (its own rate limit), and a request it refused (429, 502-504, model not
  loaded), or that could not reach it, goes at once to another replica: a
  model's limits are per replica;
- with ``hedge=``, a request still unanswered after the model's recent p95
  latency (or a fixed delay) is copied to another replica; the first answer
  wins and the other call is cancelled, within a budget (5% extra requests).

The pool wraps anything with ``url`` and ``async post(body)`` (the REST,
binary and gRPC endpoints of the kserve provider), so it is the endpoint
the provider calls. What it counts (per replica, and hedges) is read by the
Prometheus sensor at scrape time (:func:`live_pools`).

Example:
    >>> from faust_inference.config import HedgeSettings, ReplicaHealthSettings
    >>> class Echo:
    ...     def __init__(self, url): self.url = url
    ...     async def post(self, body): return {"from": self.url}
    >>> pool = ReplicaPool([Echo("http://a"), Echo("http://b")],
    ...                    ReplicaHealthSettings(), hedge=HedgeSettings(delay=0.05))
    >>> [r.url for r in pool.replicas]
    ['http://a', 'http://b']
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import statistics
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from faust_inference.config import HedgeSettings, ModelSettings, ReplicaHealthSettings
from faust_inference.core.breaker import is_outage
from faust_inference.core.clock import Clock, LoopClock
from faust_inference.exceptions import (
    InferenceTimeout,
    ModelUnavailable,
    ProviderError,
    RateLimited,
    ServerError,
    TransportError,
)
from faust_inference.providers.redaction import redact_url

__all__ = [
    "HedgeStats",
    "PoolEndpoint",
    "Replica",
    "ReplicaPool",
    "ReplicaState",
    "live_pools",
    "replica_secrets",
    "replica_wire",
]

logger = logging.getLogger(__name__)

ReplicaState = Literal["up", "ejected", "probing"]
T = TypeVar("T")
E = TypeVar("E", bound="PoolEndpoint")

_EWMA = 0.1
"""Weight of the newest latency in a replica's mean (about the last 10 answers)."""
_MIN_OUTLIER_SAMPLES = 10
"""Answers a replica must have given before its latency can make it an outlier."""
_WINDOW = 256
"""Recent latencies kept for the hedge delay's p95."""
_P95_EVERY = 16
"""Recompute the p95 after this many new latencies (sorting 256 floats each time)."""
_HEDGE_BURST = 10.0
"""Hedges saved up at most: a quiet hour does not buy a burst of copies."""
_THROTTLE_DEFAULT = 1.0
"""Seconds a replica rests after a 429 without ``Retry-After``."""

_POOLS: weakref.WeakSet[ReplicaPool[Any]] = weakref.WeakSet()


class PoolEndpoint(Protocol):
    """What a pool balances: one replica's URL and a way to send it a request."""

    @property
    def url(self) -> str:
        """The replica's URL (its metrics label, without credentials)."""
        ...

    async def post(self, body: Any) -> Any:
        """Send one request; the decoded answer, or one of the package's errors."""
        ...


class Replica(Generic[E]):
    """One URL of a pool, with what the pool knows about it.

    Attributes:
        endpoint: how to reach it.
        url: its label in metrics and logs (no query string, no user info).
        state: ``up``; ``ejected`` until :attr:`ejected_until`; ``probing``
            while one request tests it.
        in_flight: requests sent to it and not answered.
        latency: recent mean latency of its answers, in seconds.
        requests, failures, cancelled, ejections: counters since start.
    """

    __slots__ = (
        "answers",
        "cancelled",
        "ejected_until",
        "ejections",
        "endpoint",
        "failures",
        "in_flight",
        "latency",
        "requests",
        "state",
        "streak",
        "throttled_until",
        "url",
    )

    def __init__(self, endpoint: E) -> None:
        self.endpoint = endpoint
        self.url = redact_url(endpoint.url)
        self.state: ReplicaState = "up"
        self.in_flight = 0
        self.latency = 0.0
        self.answers = 0
        self.streak = 0
        """Consecutive outages."""
        self.ejected_until = 0.0
        self.throttled_until = 0.0
        self.requests = 0
        self.failures = 0
        self.cancelled = 0
        self.ejections = 0

    def __repr__(self) -> str:
        return f"<Replica {self.url} {self.state} in_flight={self.in_flight}>"


@dataclass(slots=True)
class HedgeStats:
    """What hedging did: copies sent, copies that answered first, copies the budget refused."""

    sent: int = 0
    won: int = 0
    denied: int = 0


class ReplicaPool(Generic[E]):
    """Spreads one model's requests over its replicas; see the module docstring.

    Example:
        >>> pool = ReplicaPool(endpoints, ReplicaHealthSettings())  # doctest: +SKIP
        >>> answer = await pool.post({"inputs": [...]})               # doctest: +SKIP

    Args:
        endpoints: one per replica, in the order given (ties go to the first).
        health: when a replica is ejected and probed back.
        hedge: hedged requests, or None (off).
        settings: the model's registration, for metric labels.
        clock: the time source (the runner's); tests pass one that does not sleep.
    """

    def __init__(
        self,
        endpoints: Sequence[E],
        health: ReplicaHealthSettings | None = None,
        *,
        hedge: HedgeSettings | None = None,
        settings: ModelSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("a replica pool needs at least one endpoint")
        self.replicas = [Replica(e) for e in endpoints]
        self.health = health or ReplicaHealthSettings()
        self.hedge = hedge
        self.settings = settings
        self.hedges = HedgeStats()
        self._clock: Clock = clock or LoopClock()
        self._turn = itertools.count()
        self._recent: deque[float] = deque(maxlen=_WINDOW)
        self._since_p95 = 0
        self._p95: float | None = None
        self._hedge_tokens = 0.0
        _POOLS.add(self)

    @property
    def url(self) -> str:
        """The first replica's URL (for messages that name one)."""
        return self.replicas[0].url

    @property
    def p95(self) -> float | None:
        """The recent 95th-percentile latency, once enough answers are known."""
        return self._p95

    async def post(self, body: Any) -> Any:
        """Send ``body`` to the best replica (hedged if configured); its answer."""
        return await self.call(lambda endpoint: endpoint.post(body))

    async def call(self, send: Callable[[E], Awaitable[T]]) -> T:
        """Run ``send`` against the best replica, failing over and hedging as configured.

        A request that got no answer (refused, reset), a 429, or an answer
        saying this replica cannot serve now (502, 503, 504, or the model not
        loaded there) goes at once to a replica not tried yet. Other errors
        are the caller's to retry: a 500 may be the input's fault, and a
        timeout already took the caller's time.

        Raises:
            ProviderError: every replica tried failed; the last error.
        """
        tried: set[int] = set()
        while True:
            index = self._pick(tried)
            tried.add(index)
            try:
                return await self._hedged(index, send, tried)
            except ProviderError as exc:
                if not _elsewhere(exc) or len(tried) >= len(self.replicas):
                    raise
                if all(i in tried for i in self._available()):
                    raise

    # -- choosing -------------------------------------------------------------------

    def _available(self) -> list[int]:
        """Replicas that may take a request now: up, or due for their probe."""
        now = self._clock.monotonic()
        out = []
        for i, r in enumerate(self.replicas):
            if r.state == "ejected" and now >= r.ejected_until:
                r.state = "probing"  # its next request is the probe
            if r.state == "up" or (r.state == "probing" and r.in_flight == 0):
                out.append(i)
        return out

    def _pick(self, exclude: set[int]) -> int:
        now = self._clock.monotonic()
        candidates = [i for i in self._available() if i not in exclude]
        rested = [i for i in candidates if self.replicas[i].throttled_until <= now]
        pool = rested or candidates
        if not pool:
            # Everything is ejected or tried: the least-bad replica still
            # answers better than no request at all.
            pool = [i for i in range(len(self.replicas)) if i not in exclude] or list(
                range(len(self.replicas))
            )
        n = len(self.replicas)
        start = next(self._turn) % n
        return min(pool, key=lambda i: (self.replicas[i].in_flight, (i - start) % n))

    # -- sending --------------------------------------------------------------------

    async def _hedged(self, index: int, send: Callable[[E], Awaitable[T]], tried: set[int]) -> T:
        hedge = self.hedge
        if hedge is not None:
            self._hedge_tokens = min(_HEDGE_BURST, self._hedge_tokens + hedge.budget)
        delay = self._hedge_delay()
        if delay is None:
            return await self._attempt(index, send)
        loop = asyncio.get_running_loop()
        first = loop.create_task(self._attempt(index, send))
        timer = loop.create_task(self._clock.sleep(delay))
        tasks: set[asyncio.Task[Any]] = {first, timer}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if first in done:
                return first.result()
            if self._hedge_tokens < 1.0:
                self.hedges.denied += 1
                return await first
            self._hedge_tokens -= 1.0
            others = [i for i in self._available() if i != index]
            second_index = self._pick({index}) if others else index
            tried.add(second_index)
            second = loop.create_task(self._attempt(second_index, send))
            self.hedges.sent += 1
            tasks = {first, second}
            error: BaseException | None = None
            while tasks:
                done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        if task is second:
                            self.hedges.won += 1
                        return task.result()  # type: ignore[no-any-return]
                    error = error or exc
            assert error is not None
            raise error
        finally:
            for task in (first, timer, *tasks):
                task.cancel()
            await asyncio.gather(first, timer, *tasks, return_exceptions=True)

    def _hedge_delay(self) -> float | None:
        hedge = self.hedge
        if hedge is None:
            return None
        if hedge.delay is not None:
            return hedge.delay
        if len(self._recent) < hedge.min_samples:
            return None
        return self._p95

    async def _attempt(self, index: int, send: Callable[[E], Awaitable[T]]) -> T:
        replica = self.replicas[index]
        clock = self._clock
        replica.in_flight += 1
        replica.requests += 1
        started = clock.monotonic()
        try:
            result = await send(replica.endpoint)
        except ProviderError as exc:
            replica.in_flight -= 1
            self._failed(replica, exc, clock.monotonic() - started)
            raise
        except BaseException:
            replica.in_flight -= 1
            replica.cancelled += 1
            # Cancelled (the hedge won, or the caller's timeout): it took at
            # least this long, which is worth knowing about a slow replica.
            self._slow(replica, clock.monotonic() - started)
            raise
        replica.in_flight -= 1
        self._answered(replica, clock.monotonic() - started)
        return result

    # -- health ---------------------------------------------------------------------

    def _answered(self, replica: Replica[E], latency: float) -> None:
        replica.streak = 0
        if replica.state == "probing":
            replica.state = "up"
            replica.latency = max(latency, self._median_latency(replica) or latency)
            logger.info("replica %s answers again; back in the pool", replica.url)
        else:
            replica.latency = (
                latency
                if replica.answers == 0
                else replica.latency + _EWMA * (latency - replica.latency)
            )
        replica.answers += 1
        self._recent.append(latency)
        self._since_p95 += 1
        if self._since_p95 >= _P95_EVERY or self._p95 is None:
            self._since_p95 = 0
            ordered = sorted(self._recent)
            self._p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        self._check_outlier(replica)

    def _slow(self, replica: Replica[E], elapsed: float) -> None:
        if replica.answers and elapsed > replica.latency:
            replica.latency += _EWMA * (elapsed - replica.latency)
            self._check_outlier(replica)

    def _failed(self, replica: Replica[E], error: ProviderError, elapsed: float) -> None:
        replica.failures += 1
        if isinstance(error, RateLimited):
            wait = error.retry_after if error.retry_after is not None else _THROTTLE_DEFAULT
            replica.throttled_until = self._clock.monotonic() + wait
            return
        if not is_outage(error):
            replica.streak = 0  # an answer, if an unhappy one: the replica is up
            if replica.state == "probing":
                replica.state = "up"
            return
        replica.streak += 1
        if isinstance(error, InferenceTimeout):
            self._slow(replica, elapsed)
        if replica.state == "probing":
            self._eject(replica, "its probe failed")
        elif replica.streak >= self.health.failures:
            self._eject(replica, f"{replica.streak} failures in a row")

    def _median_latency(self, replica: Replica[E]) -> float | None:
        others = [
            r.latency
            for r in self.replicas
            if r is not replica and r.state == "up" and r.answers >= _MIN_OUTLIER_SAMPLES
        ]
        return statistics.median(others) if others else None

    def _check_outlier(self, replica: Replica[E]) -> None:
        factor = self.health.outlier_factor
        if factor is None or replica.state != "up" or replica.answers < _MIN_OUTLIER_SAMPLES:
            return
        median = self._median_latency(replica)
        if median is None:
            return
        if replica.latency > factor * median and replica.latency - median > (
            self.health.outlier_min_gap
        ):
            self._eject(
                replica,
                f"mean latency {replica.latency * 1000:.0f} ms against the others' "
                f"{median * 1000:.0f} ms",
            )

    def _eject(self, replica: Replica[E], why: str) -> None:
        out = sum(1 for r in self.replicas if r.state != "up")
        most = min(len(self.replicas) - 1, int(self.health.max_ejected * len(self.replicas)))
        if replica.state == "up" and out >= most:
            return  # keep enough replicas in: a slow one beats none
        replica.ejections += 1
        wait = min(
            self.health.max_eject_time, self.health.eject_time * 2 ** (replica.ejections - 1)
        )
        replica.state = "ejected"
        replica.ejected_until = self._clock.monotonic() + wait
        replica.streak = 0
        logger.warning("replica %s ejected for %gs: %s", replica.url, wait, why)

    # -- lifecycle ------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every replica's endpoint that holds its own connections (gRPC channels)."""
        _POOLS.discard(self)
        for replica in self.replicas:
            close = getattr(replica.endpoint, "aclose", None)
            if close is not None:
                await close()

    def __repr__(self) -> str:
        return f"<ReplicaPool {[r.url for r in self.replicas]} hedge={self.hedge is not None}>"


def _elsewhere(error: ProviderError) -> bool:
    """Whether another replica may answer what this one could not, at once."""
    if isinstance(error, InferenceTimeout):
        return False
    if isinstance(error, RateLimited | TransportError | ModelUnavailable):
        return True
    return isinstance(error, ServerError) and error.status in (502, 503, 504)


def live_pools() -> Iterator[ReplicaPool[Any]]:
    """Every pool not yet closed or collected (what the metrics sensor reads)."""
    return iter(list(_POOLS))


def replica_wire(settings: ModelSettings, wires: Sequence[E]) -> E | ReplicaPool[E]:
    """What a provider sends through: its one endpoint, or a pool of its replicas.

    One endpoint without ``hedge=`` needs no pool: nothing to balance, and no
    bookkeeping on the hot path. Several (``endpoint=[...]``), or hedging
    (which may copy a call to the same replica), get a :class:`ReplicaPool`.
    Providers that call this declare ``pooled = True`` (see
    :func:`~faust_inference.providers.create_provider`).

    Example:
        >>> from faust_inference.config import ModelSettings
        >>> class Echo:
        ...     def __init__(self, url): self.url = url
        ...     async def post(self, body): return {"from": self.url}
        >>> settings = ModelSettings(name="m", provider="http",
        ...                          endpoint=["http://a", "http://b"])
        >>> type(replica_wire(settings, [Echo(u) for u in settings.replica_urls])).__name__
        'ReplicaPool'
    """
    if len(wires) > 1 or settings.hedge is not None:
        return ReplicaPool(wires, settings.replicas, hedge=settings.hedge, settings=settings)
    return wires[0]


class _HasSecrets(Protocol):
    def secrets(self) -> tuple[str, ...]: ...


def replica_secrets(endpoints: Iterable[_HasSecrets]) -> tuple[str, ...]:
    """Every replica's credentials, once each: each URL may carry its own password.

    Example:
        >>> class Keyed:
        ...     def __init__(self, *keys): self.keys = keys
        ...     def secrets(self): return self.keys
        >>> replica_secrets([Keyed("k1"), Keyed("k1", "p2")])
        ('k1', 'p2')
    """
    return tuple(dict.fromkeys(secret for e in endpoints for secret in e.secrets()))
