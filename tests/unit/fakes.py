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


class FakeClock:
    """Monotonic time that advances only when slept on, so backoff costs nothing."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
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
    ) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
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
