"""Backoff for retryable failures.

Kept apart from the runner so the schedule can be tested without time passing,
and so every provider shares one definition of "retryable" (the error's own
``retryable`` flag, set once at the transport boundary).
"""

from __future__ import annotations

import random

from faust_inference.config import RetrySettings
from faust_inference.exceptions import ProviderError, RemoteError

__all__ = ["RetryPolicy"]


class RetryPolicy:
    """Decides whether to retry and how long to wait first.

    The wait is exponential with "equal jitter": a fixed part that grows with
    the attempt, plus a random part, so that many workers hit by the same
    outage do not come back in lockstep. A server's ``Retry-After`` wins over
    the computed wait when it asks for longer, up to ``max_retry_after``.

    Example:
        >>> policy = RetryPolicy(RetrySettings(initial_backoff=1, jitter=0), rng=random.Random(0))
        >>> [policy.backoff(n) for n in (1, 2, 3)]
        [1.0, 2.0, 4.0]
    """

    __slots__ = ("_rng", "settings")

    def __init__(self, settings: RetrySettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()

    def should_retry(self, error: ProviderError, attempt: int) -> bool:
        """Whether failed attempt number ``attempt`` (1-based) gets another."""
        return error.retryable and attempt < self.settings.attempts

    def backoff(self, attempt: int) -> float:
        """Computed wait after failed attempt number ``attempt`` (1-based)."""
        s = self.settings
        base = min(s.max_backoff, s.initial_backoff * s.multiplier ** (attempt - 1))
        random_part = base * s.jitter
        return base - random_part + self._rng.uniform(0, random_part)

    def delay(self, error: ProviderError, attempt: int) -> float:
        """The wait before retrying after ``error``, honouring ``Retry-After``."""
        wait = self.backoff(attempt)
        retry_after = error.retry_after if isinstance(error, RemoteError) else None
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.settings.max_retry_after))
        return wait
