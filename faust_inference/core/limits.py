"""Rate limits for one model: token buckets shared by every caller, adapted on 429.

One :class:`RateLimiter` per model and worker, held by the model's runner,
so every agent (and every ``predict()``) of the worker draws from the same
buckets. Over the limit a call *waits* for its turn: the stream slows down,
nothing fails and nothing is dropped.

The buckets reserve rather than poll (the "generic cell rate algorithm"): a
caller is told at once when its turn comes and sleeps exactly that long, so
waiting callers go out in arrival order without a lock, and time comes from
the runner's :class:`~faust_inference.core.clock.Clock`, so tests run whole
schedules without sleeping. aiolimiter's ``AsyncLimiter`` was the first
choice, but it reads the loop's clock directly, cannot change its rate while
callers wait, and cannot charge tokens after the fact (a model's token count
is only known from its answer), which the token-per-minute limit needs.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from faust_inference.config import RateLimitSettings
from faust_inference.core.clock import Clock
from faust_inference.results import Usage

__all__ = ["RateLimiter", "TokenBucket"]


class TokenBucket:
    """``rate`` units per second, ``burst`` of them at once after a quiet spell.

    :meth:`reserve` books the caller's turn and says how long to wait for
    it; a cost may also be charged after the fact (:meth:`charge`), which
    delays later callers (a debt, as token-per-minute limits need).

    Example:
        >>> bucket = TokenBucket(rate=2, burst=2, now=0.0)
        >>> [bucket.reserve(0.0) for _ in range(4)]
        [0.0, 0.0, 0.5, 1.0]
    """

    __slots__ = ("_interval", "_tat", "_tolerance", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1.0) * self._interval
        self._tat = now
        """The theoretical arrival time: when the bucket is empty again."""

    def set_rate(self, rate: float, burst: float) -> None:
        """Change the rate from now on (turns already booked stand)."""
        self.rate = rate
        self._interval = 1.0 / rate
        self._tolerance = max(0.0, (burst - 1.0) * self._interval)

    def reserve(self, now: float, cost: float = 1.0) -> float:
        """Book ``cost`` units; returns the seconds to wait before using them."""
        tat = self._tat if self._tat > now else now
        self._tat = tat + cost * self._interval
        wait = tat - self._tolerance - now
        return wait if wait > 0.0 else 0.0

    def charge(self, now: float, cost: float) -> None:
        """Take ``cost`` units already used; later callers wait for them."""
        tat = self._tat if self._tat > now else now
        self._tat = tat + cost * self._interval

    def hold_until(self, when: float) -> None:
        """Let nothing through before ``when``, then resume at the rate (no burst)."""
        self._tat = max(self._tat, when + self._tolerance)


class RateLimiter:
    """Requests per second/minute and tokens per minute of one model, adapted on 429.

    Example:
        >>> from faust_inference.core.clock import LoopClock
        >>> limiter = RateLimiter(RateLimitSettings(requests_per_second=10), LoopClock())
        >>> limiter.rate
        10.0

    In the runner: ``await clock.sleep(limiter.reserve())`` before each
    request, :meth:`charge` with the answer's token usage, and
    :meth:`throttled` when the server answers 429.

    Args:
        settings: the model's limits.
        clock: the runner's time source.
        on_change: told the new request rate (requests/s) when it is cut or recovers.
    """

    __slots__ = (
        "_ceiling",
        "_changed",
        "_clock",
        "_cut_at",
        "_cut_from",
        "_paused_until",
        "_recent",
        "_requests",
        "_started",
        "_tokens",
        "_updated",
        "settings",
    )

    def __init__(
        self,
        settings: RateLimitSettings,
        clock: Clock,
        on_change: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._changed = on_change
        self._ceiling = settings.per_second
        self._requests: TokenBucket | None = None
        self._tokens: TokenBucket | None = None
        self._paused_until = 0.0
        self._cut_at = -math.inf
        self._cut_from = self._ceiling or 0.0
        self._updated = 0.0
        self._started = False
        # Without a configured rate, the recent request times say what rate
        # drew the first 429.
        self._recent: deque[float] | None = (
            deque(maxlen=64) if self._ceiling is None and settings.adaptive else None
        )

    @property
    def rate(self) -> float | None:
        """The request rate allowed now, in requests/s; None while unlimited."""
        if self._requests is None:
            return self._ceiling
        return self._requests.rate

    def _burst(self, rate: float) -> float:
        return self.settings.burst or max(1.0, rate)

    def _start(self, now: float) -> None:
        if self._ceiling is not None:
            self._requests = TokenBucket(self._ceiling, self._burst(self._ceiling), now)
        tpm = self.settings.tokens_per_minute
        if tpm is not None:
            self._tokens = TokenBucket(tpm / 60.0, tpm, now)
        self._updated = now
        self._started = True

    def reserve(self) -> float:
        """Book the next request; returns the seconds to wait before sending it."""
        now = self._clock.monotonic()
        if not self._started:
            self._start(now)
        requests = self._requests
        wait = 0.0
        if requests is not None:
            if self._ceiling is not None and requests.rate < self._ceiling:
                self._recover(requests, now)
            wait = requests.reserve(now)
        elif self._recent is not None:
            self._recent.append(now)
        if self._tokens is not None:
            wait = max(wait, self._tokens.reserve(now, 0.0))
        pause = self._paused_until - now
        return pause if pause > wait else wait

    def charge(self, usage: Usage) -> None:
        """Count a finished request's tokens against the tokens-per-minute limit."""
        if self._tokens is not None:
            self._tokens.charge(self._clock.monotonic(), usage.input_tokens + usage.output_tokens)

    def throttled(self, sent_at: float, retry_after: float | None) -> float:
        """The server answered 429 to a request sent at ``sent_at``: slow down.

        Every caller waits out ``retry_after`` (at least until the next turn);
        the rate is cut once per burst of 429s: answers to requests sent
        before the last cut say nothing new.

        Returns:
            the seconds until the next request may go.
        """
        now = self._clock.monotonic()
        if not self._started:
            self._start(now)
        if retry_after is not None and retry_after > 0:
            self._paused_until = max(self._paused_until, now + retry_after)
        if self.settings.adaptive and sent_at >= self._cut_at:
            self._cut(now)
        if self._requests is not None and self._paused_until > now:
            self._requests.hold_until(self._paused_until)
        return max(0.0, self._paused_until - now)

    def _cut(self, now: float) -> None:
        current = self.rate
        if current is None:
            current = self._observed_rate()
            self._ceiling = current
        new = max(self.settings.min_rate, current * self.settings.decrease)
        if self._requests is None:
            self._requests = TokenBucket(new, self._burst(new), now)
        else:
            self._requests.set_rate(new, self._burst(new))
        self._cut_at = now
        self._cut_from = current
        self._updated = now
        if self._changed is not None:
            self._changed(new)

    def _recover(self, requests: TokenBucket, now: float) -> None:
        """Additive increase: regain ``increase`` of the pre-cut rate per second."""
        assert self._ceiling is not None
        elapsed = now - self._updated
        if elapsed < 0.1:  # cheap: at most ten small steps a second
            return
        self._updated = now
        new = min(self._ceiling, requests.rate + self.settings.increase * self._cut_from * elapsed)
        requests.set_rate(new, self._burst(new))
        if self._changed is not None:
            self._changed(new)

    def _observed_rate(self) -> float:
        recent = self._recent
        if recent is None or len(recent) < 2 or recent[-1] <= recent[0]:
            return max(self.settings.min_rate, 1.0)
        return (len(recent) - 1) / (recent[-1] - recent[0])
