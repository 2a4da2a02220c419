"""Test doubles for the core: a scripted provider and a clock that does not sleep.

They stand in for the network only in unit tests of the core; integration
tests use real model servers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from faust_inference import Predictions


class FakeTimer:
    """A callback due at a fake time; runs when a :class:`FakeClock` passes it."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Monotonic time that advances only when slept on, so backoff costs nothing.

    Timers (``call_later``) fire when the time passes them: on :meth:`sleep`
    or :meth:`advance`, never on their own.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.timers: list[FakeTimer] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._move_to(self.now + seconds)
        await asyncio.sleep(0)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback, args)
        self.timers.append(timer)
        return timer

    @property
    def pending_timers(self) -> list[FakeTimer]:
        """Timers neither fired nor cancelled."""
        return [t for t in self.timers if not t.cancelled]

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass without sleeping.

        The loop runs first (what is ready happens now), then the timers due
        fire, then the loop runs again.
        """
        await settle()
        self._move_to(self.now + seconds)
        await settle()

    def _move_to(self, when: float) -> None:
        while True:
            due = [t for t in self.timers if not t.cancelled and t.when <= when]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self.now = max(self.now, timer.when)
            timer.cancelled = True  # fired: once only
            timer.callback(*timer.args)
        self.timers = [t for t in self.timers if not t.cancelled]
        self.now = max(self.now, when)


async def settle(rounds: int = 20) -> None:
    """Let every ready task run (a bounded number of loop turns), with no time passing."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class FakeProvider:
    """Answers ``fn(input)`` per input, after raising any scripted errors first.

    Records every batch it was sent and the peak number of calls in flight.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any] = lambda x: x * 2,
        *,
        max_batch_size: int | None = None,
        delay: float = 0.0,
        fail_on: Callable[[Sequence[Any]], BaseException | None] | None = None,
        batching: bool = False,
    ) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.batching = batching
        """Whether ``batch_size="auto"`` batches (as the OIP and embeddings providers say)."""
        self.delay = delay
        self.fail_on = fail_on
        self.script: deque[BaseException] = deque()
        self.batches: list[list[Any]] = []
        self.in_flight = 0
        self.peak = 0
        self.closed = False
        self.gate: asyncio.Event | None = None

    async def infer(self, inputs: Sequence[Any]) -> Predictions:
        self.batches.append(list(inputs))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.script:
                raise self.script.popleft()
            if self.fail_on is not None:
                error = self.fail_on(inputs)
                if error is not None:
                    raise error
            return Predictions([self.fn(x) for x in inputs])
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        self.closed = True
