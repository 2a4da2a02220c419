"""Time as the inference core sees it.

The runner sleeps between retries through a :class:`Clock`, so tests can run
a whole backoff schedule without waiting, and check the waits it asked for.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["Clock", "LoopClock"]


class Clock(Protocol):
    """Time as the runner sees it; replaced in tests so that backoff takes no time."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary point; only differences matter."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class LoopClock:
    """The running event loop's clock."""

    __slots__ = ()

    def monotonic(self) -> float:
        """The loop's time."""
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)
