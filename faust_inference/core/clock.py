"""Time as the inference core sees it.

The runner sleeps between retries, and waits for a batch to fill, through a
:class:`Clock`, so tests can run a whole backoff schedule or batch timeout
without waiting, and check the waits it asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Clock", "LoopClock", "Timer"]


class Timer(Protocol):
    """A scheduled callback that can be called off (``asyncio.TimerHandle`` is one)."""

    def cancel(self) -> None:
        """Do not run the callback; nothing happens if it already ran."""
        ...


class Clock(Protocol):
    """Time as the runner sees it; replaced in tests so that waits take no time."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary point; only differences matter."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        """Run ``callback(*args)`` once ``delay`` seconds have passed.

        A bare callback rather than a sleeping task: the batcher arms one per
        batch, and a task (or ``asyncio.timeout``) costs more than the wait.
        """
        ...


class LoopClock:
    """The running event loop's clock.

    Example:
        >>> async def main():
        ...     clock = LoopClock()
        ...     fired = asyncio.Event()
        ...     clock.call_later(0.001, fired.set)
        ...     await fired.wait()
        ...     return clock.monotonic() > 0
        >>> asyncio.run(main())
        True
    """

    __slots__ = ()

    def monotonic(self) -> float:
        """The loop's time."""
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        """``loop.call_later``: an ``asyncio.TimerHandle``."""
        return asyncio.get_running_loop().call_later(delay, callback, *args)
