"""A circuit breaker: stop calling an endpoint that keeps failing, probe it, resume.

Retries help with a blip; against an endpoint that is down they multiply the
load on it and fill the dead-letter topic. After ``failures`` consecutive
failed calls the breaker *opens*: no call goes out for ``reset_timeout``
seconds. Then it is *half-open*: up to ``probes`` calls test the endpoint. A
success *closes* it; a failure opens it again.

Only outages count as failures: no answer (connection errors, timeouts),
5xx, and 2xx bodies that are not what the protocol says (a server answering
garbage is down). A 4xx or a 429 is an answer from a working server, and an
answer that fails the model's ``output_type`` is the model's, not the
server's.

The breaker also knows how long the current streak of failures has lasted
(:meth:`CircuitBreaker.outage_seconds`) and when a call last succeeded: the
sender uses both to hold events through an outage, up to the model's
``outage_budget``, instead of dead-lettering them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from faust_inference.config import CircuitBreakerSettings, ModelSettings
from faust_inference.core.clock import Clock, LoopClock
from faust_inference.exceptions import (
    InvalidOutput,
    ResponseDecodeError,
    ServerError,
    TransportError,
)

__all__ = ["BreakerPool", "CircuitBreaker", "CircuitState", "is_outage"]

CircuitState = Literal["closed", "open", "half_open"]


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` says the endpoint is down (it counts towards opening)."""
    return isinstance(error, TransportError | ServerError | ResponseDecodeError) and not (
        isinstance(error, InvalidOutput)
    )


class CircuitBreaker:
    """The state of one endpoint, shared by every call to it.

    Example:
        >>> class Frozen:  # any Clock: the runner passes the loop's
        ...     def monotonic(self): return 0.0
        ...     async def sleep(self, seconds): pass
        >>> breaker = CircuitBreaker(CircuitBreakerSettings(failures=2), Frozen())
        >>> breaker.record(failed=True); breaker.record(failed=True)
        >>> breaker.state
        'open'

    A call asks :meth:`allow` (or waits in :meth:`admit`) before it is sent,
    and then reports its result with :meth:`record`, or :meth:`release` when
    it was never answered (cancelled): a half-open breaker counts its probes.

    Args:
        settings: when to open and how long to stay open.
        clock: the runner's time source.
        on_change: told every new state (more with :meth:`add_listener`).
    """

    __slots__ = (
        "_changed",
        "_clock",
        "_failures",
        "_listeners",
        "_opened_at",
        "_probes",
        "_streak_started",
        "newest_answered",
        "settings",
        "state",
    )

    def __init__(
        self,
        settings: CircuitBreakerSettings,
        clock: Clock,
        on_change: Callable[[CircuitState], None] | None = None,
    ) -> None:
        self.settings = settings
        self.state: CircuitState = "closed"
        self._clock = clock
        self._listeners: list[Callable[[CircuitState], None]] = []
        if on_change is not None:
            self._listeners.append(on_change)
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0
        self._changed: asyncio.Event | None = None
        self._streak_started: float | None = None
        self.newest_answered = float("-inf")
        """When the most recently *sent* call that got an answer was sent.

        A call that failed while a call sent after it was answered failed on
        its own: the server was working."""

    @property
    def outage_began(self) -> float:
        """Clock time the current streak's first failure was seen (now, if none)."""
        started = self._streak_started
        return self._clock.monotonic() if started is None else started

    def outage_seconds(self) -> float:
        """How long the current streak of failures has lasted (0 without one)."""
        started = self._streak_started
        return 0.0 if started is None else self._clock.monotonic() - started

    def add_listener(self, on_change: Callable[[CircuitState], None]) -> None:
        """Also tell ``on_change`` every new state (each model sharing the endpoint)."""
        self._listeners.append(on_change)

    def allow(self) -> bool:
        """Whether a call may be sent now; in half-open state this takes a probe."""
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            # The same sum as admit()'s wait: a difference could round below
            # reset_timeout when the sum does not, and admit() would spin.
            if self._clock.monotonic() < self._opened_at + self.settings.reset_timeout:
                return False
            self._probes = 0
            self._set("half_open")
        if self._probes < self.settings.probes:
            self._probes += 1
            return True
        return False

    async def admit(self, until: float | None = None) -> bool:
        """Wait until a call may be sent (backpressure while the circuit is open).

        Args:
            until: give up at this clock time (the outage budget's end).

        Returns:
            Whether the call may go; False when ``until`` came first.
        """
        clock = self._clock
        while not self.allow():
            now = clock.monotonic()
            if until is not None and now >= until:
                return False
            if self.state == "open":
                wait = max(0.0, self._opened_at + self.settings.reset_timeout - now)
                if until is not None:
                    wait = min(wait, max(0.0, until - now))
                await clock.sleep(wait)
            else:  # half-open, every probe out: wait for their verdict (bounded
                # by the probe's own timeout)
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()
        return True

    def record(self, *, failed: bool, sent_at: float | None = None) -> None:
        """A call that :meth:`allow` let through got an answer (or an outage).

        Args:
            failed: whether it was an outage.
            sent_at: when the call was sent (clock time), for :attr:`newest_answered`.
        """
        if not failed:
            self._failures = 0
            sent = self._clock.monotonic() if sent_at is None else sent_at
            self.newest_answered = max(self.newest_answered, sent)
            if self.state != "closed":
                self._set("closed")  # listeners still see when the outage began
            self._streak_started = None
            return
        if self._streak_started is None:
            self._streak_started = self._clock.monotonic()
        self._failures += 1
        if self.state == "half_open" or (
            self.state == "closed" and self._failures >= self.settings.failures
        ):
            self._opened_at = self._clock.monotonic()
            self._set("open")

    def release(self) -> None:
        """A call let through ended without a verdict (cancelled, never sent)."""
        if self.state == "half_open" and self._probes > 0:
            self._probes -= 1
            self._wake()

    def _set(self, state: CircuitState) -> None:
        self.state = state
        self._wake()
        for listener in self._listeners:
            listener(state)

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


class BreakerPool:
    """One circuit breaker per endpoint, shared by the models served there.

    When a server is down, every model on it is down: the first model to
    see the failures opens the circuit for all of them. The key is the
    endpoint URL (the provider and remote name when a provider has no URL);
    the first registered model's settings configure the breaker.

    Example:
        >>> pool = BreakerPool()
        >>> a = ModelSettings(name="a", provider="kserve", endpoint="http://s:8080",
        ...                   circuit_breaker=True)
        >>> b = a.model_copy(update={"name": "b"})
        >>> pool.get(a) is pool.get(b)  # doctest: +SKIP
        True
    """

    __slots__ = ("_breakers", "_clock")

    def __init__(self, clock: Clock | None = None) -> None:
        self._breakers: dict[str, CircuitBreaker] = {}
        self._clock = clock

    def get(self, settings: ModelSettings) -> CircuitBreaker | None:
        """The breaker of ``settings``' endpoint; None when the model has none."""
        if settings.circuit_breaker is None:
            return None
        key = settings.endpoint or f"{settings.provider}:{settings.target}"
        breaker = self._breakers.get(key)
        if breaker is None:
            clock = self._clock or LoopClock()
            breaker = self._breakers[key] = CircuitBreaker(settings.circuit_breaker, clock)
        return breaker
