"""The inference engine for one model: micro-batching, in-flight cap, retries, fallback.

Everything that calls a model (stream agents, ``predict()`` from a web view or
a notebook) goes through one :class:`InferenceRunner` per model and worker,
so the in-flight cap is a property of the model server, not of each caller.

The dispatcher takes a concurrency slot *before* it forms a batch: while every
slot is busy, events pile up in the queue and the next free slot sends a full
batch at once. Under light load a batch waits at most ``batch_timeout`` for
company, and only while inputs arrive closer together than that: at a
trickle, waiting would add latency and bring no company. This adapts the
batch size to the load without any tuning.

Behind the stream (a backlog in Kafka: the caller passes ``backlog=``, the
events already waiting behind this one at its source), waiting costs no
latency the events have not already paid, while every request saved is CPU
the worker gets back for reading: a batch then keeps filling past
``batch_timeout`` as long as the backlog covers the rest of it and inputs keep
arriving within ``batch_timeout`` of each other. Each extension needs a new
arrival, so a batch waits at most ``batch_size`` x ``batch_timeout`` in all.

With ``batch_size="auto"`` (the default) and a provider whose protocol
batches (``provider.batching``), the most events per request starts at 1 and
doubles after each full batch the server answered, up to
:data:`AUTO_BATCH_LIMIT`. A server that rejects batches (a batch fails as if
one input were bad, then every one of its events succeeds alone) gets the
largest batch it accepted, 1 if none, from then on: its events were already
resent alone, so none fails for it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from faust_inference.config import ModelSettings
from faust_inference.core.breaker import CircuitBreaker
from faust_inference.core.clock import Clock, LoopClock
from faust_inference.core.hooks import InferenceHooks
from faust_inference.core.provider import Provider
from faust_inference.core.retry import RetryPolicy
from faust_inference.core.sender import Sender
from faust_inference.exceptions import (
    ClientError,
    InferenceError,
    InvalidInput,
    ResponseDecodeError,
    RetriesExhausted,
    ServerError,
)
from faust_inference.results import Usage

__all__ = ["AUTO_BATCH_LIMIT", "InferenceRunner", "Outcome"]

logger = logging.getLogger(__name__)

AUTO_BATCH_LIMIT = 64
"""Most events per request that ``batch_size="auto"`` grows to (or the provider's limit)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One input's successful answer, with how it was obtained."""

    output: Any
    model: str
    version: str | None
    latency_s: float
    attempts: int
    fallback: bool = False
    usage: Usage | None = None
    cached: bool = False


class _Split:
    """A failed batch whose events are sent alone: did they all pass? (``batch_size="auto"``)."""

    __slots__ = ("failed", "left", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.left = size
        self.failed = False


class _Pending:
    __slots__ = ("future", "input", "patient", "prior_attempts", "solo", "split")

    def __init__(
        self,
        value: Any,
        future: asyncio.Future[Outcome],
        solo: bool = False,
        prior_attempts: int = 0,
        patient: bool = True,
        split: _Split | None = None,
    ) -> None:
        self.input = value
        self.future = future
        self.solo = solo
        """Sent alone, after its batch failed; its batch already used the retries."""
        self.prior_attempts = prior_attempts
        self.patient = patient
        """Waits through an outage (up to ``outage_budget``) instead of failing."""
        self.split = split
        """The failed batch it came from, while ``batch_size="auto"`` watches it."""


# Errors that say the request itself is wrong. A batch that fails with one of
# these is split so that one bad event does not fail its neighbours.
_REQUEST_FAULTS = (ClientError, InvalidInput, ResponseDecodeError)


def _maybe_one_bad_input(exc: InferenceError) -> bool:
    """Whether a batch's failure may be caused by a single input in it.

    Besides 4xx answers, a plain 500 counts: some servers (MLServer among
    them) answer 500 to a malformed row and fail its whole batch with it.
    Unavailability (timeouts, resets, 429, 502-504) says nothing about the
    inputs, so those batches are not split, which would multiply the load on
    a struggling server.
    """
    if isinstance(exc, RetriesExhausted):
        last = exc.last_error
        return (isinstance(last, ServerError) and last.status == 500) or isinstance(
            last, ResponseDecodeError
        )
    return isinstance(exc, _REQUEST_FAULTS)


class InferenceRunner:
    """Calls one model for many concurrent callers.

    Example:
        >>> async def main(provider, settings):
        ...     runner = InferenceRunner(provider, settings)
        ...     try:
        ...         return await runner.predict([0.1, 0.2])
        ...     finally:
        ...         await runner.aclose()

    Args:
        provider: how to call the model.
        settings: the model's registration.
        fallback: looks up another model's runner by name, for ``settings.fallback``.
        clock: the time source; tests pass one that does not sleep.
        rng: randomness for the backoff jitter.
        hooks: told about requests, retries and fallbacks (metrics).
        breaker: the endpoint's circuit breaker, when several models share one;
            by default the runner builds its own from ``settings.circuit_breaker``.
    """

    def __init__(
        self,
        provider: Provider,
        settings: ModelSettings,
        *,
        fallback: Callable[[str], InferenceRunner] | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        hooks: InferenceHooks | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.provider = provider
        self.hooks = hooks or InferenceHooks()
        self.settings = settings
        self.name = settings.name
        self._lookup_fallback = fallback
        self._clock: Clock = clock or LoopClock()
        self._policy = RetryPolicy(settings.retries, rng=rng)
        limit = provider.max_batch_size
        wanted = settings.batch_size
        self.auto = wanted == "auto" and limit != 1 and bool(getattr(provider, "batching", False))
        """Whether the batch size adapts (``batch_size="auto"`` and a provider that batches)."""
        if wanted == "auto":
            wanted = AUTO_BATCH_LIMIT if self.auto else 1
        self.batch_size = min(wanted, limit) if limit else wanted
        """Most events one request carries."""
        self.current_batch_size = 1 if self.auto else self.batch_size
        """Most events the next request may carry: grows up to :attr:`batch_size` (auto)."""
        self._accepted = 1
        """Largest batch the server has answered (``batch_size="auto"``)."""
        self._queue: deque[_Pending] = deque()
        self._wakeup: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._closed = False
        self._last_arrival: float | None = None
        self._arrival_gap = 0.0
        self._gap_known = False
        """Recent mean time between two submitted inputs (EWMA), in clock seconds."""
        self._backlog = 0
        """Inputs waiting behind the latest one at its source, as its caller said."""
        self.in_flight = 0
        """Requests being sent or awaiting an answer right now."""
        self._sender = Sender(
            provider,
            settings,
            clock=self._clock,
            policy=self._policy,
            hooks=self.hooks,
            breaker=breaker,
        )
        self.limiter = self._sender.limiter
        """The model's rate limits, shared by every caller of this worker."""
        self.breaker = self._sender.breaker
        """The endpoint's circuit breaker, if one is configured."""

    # -- public API ---------------------------------------------------------------

    def submit(
        self, value: Any, *, patient: bool = True, backlog: int = 0
    ) -> asyncio.Future[Outcome]:
        """Queue one model input; the future resolves to its :class:`Outcome`.

        The future fails with :class:`RetriesExhausted` or a non-retryable
        :class:`ProviderError` when no fallback applies. A ``patient`` input
        (a stream event) waits through an outage of the endpoint for up to
        the model's ``outage_budget``; an impatient one (a direct
        :meth:`predict`) fails once its retries are used up. ``backlog`` is
        how many inputs are known to wait behind this one at its source (a
        Kafka partition's lag): batches fill from them (see the module's
        docstring).
        """
        if self._closed:
            raise RuntimeError(f"model {self.name!r} is closed")
        loop = asyncio.get_running_loop()
        if self._dispatcher is None:
            self._start(loop)
        future: asyncio.Future[Outcome] = loop.create_future()
        now = self._clock.monotonic()
        if self._last_arrival is not None:
            # Capped, so that one idle spell does not hide the next burst.
            gap = min(now - self._last_arrival, _GAP_CAP * self.settings.batch_timeout)
            if self._gap_known:
                self._arrival_gap += (gap - self._arrival_gap) * _GAP_WEIGHT
            else:
                self._arrival_gap, self._gap_known = gap, True
        self._last_arrival = now
        self._backlog = backlog
        queue = self._queue
        queue.append(_Pending(value, future, patient=patient))
        if len(queue) == 1 or len(queue) >= self.current_batch_size:
            assert self._wakeup is not None
            self._wakeup.set()
        return future

    async def predict(self, value: Any) -> Any:
        """Infer one input and return its output.

        Raises:
            InferenceError: the call finally failed and no fallback applied.
        """
        return (await self.submit(value, patient=False)).output

    async def predict_many(self, values: Iterable[Any]) -> list[Any]:
        """Infer many inputs, batched and limited like stream events; outputs in input order."""
        futures = [self.submit(v, patient=False) for v in values]
        outcomes = await asyncio.gather(*futures)
        return [o.output for o in outcomes]

    async def aclose(self) -> None:
        """Stop dispatching, cancel calls in flight and close the provider.

        Inputs still queued fail with ``CancelledError``: their events were not
        acknowledged, so Kafka delivers them again after a restart.
        """
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._dispatcher, *self._calls) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while self._queue:
            self._queue.popleft().future.cancel()
        await self.provider.aclose()

    # -- dispatching --------------------------------------------------------------

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.settings.max_concurrency)
        self._dispatcher = loop.create_task(self._dispatch(), name=f"inference:{self.name}")

    async def _dispatch(self) -> None:
        assert self._wakeup is not None and self._slots is not None
        queue, wakeup, slots = self._queue, self._wakeup, self._slots
        wait = self.settings.batch_timeout
        limiter, clock = self.limiter, self._clock
        loop = asyncio.get_running_loop()
        while True:
            await slots.acquire()
            try:
                while not queue:
                    wakeup.clear()
                    await wakeup.wait()
                size = self.current_batch_size  # grows as batches are answered (auto)
                if (
                    len(queue) < size
                    and wait > 0
                    and not queue[0].solo
                    and (self._arrival_gap < wait or self._backlog >= size - len(queue))
                ):
                    # Waiting for company only pays when company is expected
                    # within the wait: at a trickle (inputs further apart than
                    # batch_timeout) it would only add latency.
                    # A bare timer, not asyncio.timeout(): this runs once per
                    # batch and the cancellation machinery costs more than the wait.
                    expired = [False]
                    timer = clock.call_later(wait, _expire, expired, wakeup)
                    while len(queue) < size:
                        if expired[0]:
                            # Behind the stream: keep filling while the backlog
                            # covers the rest of the batch and inputs still come.
                            assert self._last_arrival is not None
                            quiet = clock.monotonic() - self._last_arrival
                            if self._backlog < size - len(queue) or quiet >= wait:
                                break
                            expired[0] = False
                            timer = clock.call_later(wait - quiet, _expire, expired, wakeup)
                        wakeup.clear()
                        await wakeup.wait()
                    timer.cancel()
                if limiter is not None:
                    # Wait for the rate limit's turn before taking the batch, so
                    # that what arrives meanwhile rides along in the same request.
                    delay = limiter.reserve()
                    if delay > 0:
                        await clock.sleep(delay)
            except BaseException:
                slots.release()
                raise
            batch = self._take_batch(size)
            task = loop.create_task(self._call(batch, limiter is not None))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    def _take_batch(self, size: int) -> list[_Pending]:
        queue = self._queue
        if queue[0].solo:
            return [queue.popleft()]
        batch: list[_Pending] = []
        while queue and len(batch) < size and not queue[0].solo:
            pending = queue.popleft()
            if not pending.future.done():  # the caller may have given up
                batch.append(pending)
        return batch

    async def _call(self, batch: list[_Pending], reserved: bool = False) -> None:
        assert self._slots is not None
        if not batch:  # every caller of this batch gave up meanwhile
            self._slots.release()
            return
        prior = batch[0].prior_attempts
        try:
            self.in_flight += 1
            try:
                predictions, attempts, latency = await self._sender.send(
                    [p.input for p in batch],
                    retry=not batch[0].solo,
                    prior_attempts=prior,
                    reserved=reserved,
                    patient=any(p.patient for p in batch),
                )
            finally:
                self.in_flight -= 1
        except InferenceError as exc:
            self._slots.release()
            if len(batch) > 1 and _maybe_one_bad_input(exc):
                # One event may be at fault: send each alone, ahead of the queue,
                # once: the batch already had its retries.
                split = _Split(len(batch)) if self.auto else None
                for pending in reversed(batch):
                    self._queue.appendleft(
                        _Pending(
                            pending.input,
                            pending.future,
                            True,
                            exc.attempts,
                            pending.patient,
                            split,
                        )
                    )
                assert self._wakeup is not None
                self._wakeup.set()
                return
            if batch[0].split is not None:
                self._split_answered(batch[0].split, failed=True)
            await self._settle_failure(batch, exc)
            return
        except BaseException:
            self._slots.release()
            for pending in batch:  # stopping: the callers must not wait forever
                pending.future.cancel()
            raise
        self._slots.release()
        if self.auto:
            self._batch_answered(batch)
        version = self.settings.version or predictions.model_version
        usage = _share(predictions.usage, len(batch))
        for pending, output in zip(batch, predictions.outputs, strict=True):
            if not pending.future.done():
                pending.future.set_result(
                    Outcome(output, self.name, version, latency, attempts, usage=usage)
                )

    def _batch_answered(self, batch: list[_Pending]) -> None:
        """``batch_size="auto"``: a full batch answered doubles the next one's size."""
        n = len(batch)
        if n > self._accepted:
            self._accepted = n
        if n >= self.current_batch_size and self.current_batch_size < self.batch_size:
            self.current_batch_size = min(2 * self.current_batch_size, self.batch_size)
        if batch[0].split is not None:
            self._split_answered(batch[0].split, failed=False)

    def _split_answered(self, split: _Split, *, failed: bool) -> None:
        """One event of a split batch is answered; once all passed alone, the batch was refused."""
        split.left -= 1
        split.failed |= failed
        if split.left or split.failed:
            return
        # Every event passed alone: the server refuses batches of that size,
        # not these inputs. Keep to what it accepted, and stop growing.
        fallback = self._accepted if self._accepted < split.size else 1
        if fallback < self.batch_size:
            self.batch_size = self.current_batch_size = fallback
            logger.warning(
                "model %r: the server refused a batch of %d events that each passed alone; "
                'sending at most %d per request from now on (batch_size="auto"; set '
                "batch_size= to choose)",
                self.name,
                split.size,
                fallback,
            )

    async def _settle_failure(self, batch: list[_Pending], exc: InferenceError) -> None:
        """Resolve a failed batch through the fallback chain, or fail its futures."""
        pending = [p for p in batch if not p.future.done()]
        if not pending:
            return
        if not isinstance(exc, InvalidInput):
            if self.settings.fallback and self._lookup_fallback is not None:
                try:
                    other = self._lookup_fallback(self.settings.fallback)
                except InferenceError as missing:
                    # Never leave callers waiting: they get the model's own error.
                    logger.error("model %r: fallback unavailable: %s", self.name, missing)
                    for p in pending:
                        _fail(p.future, exc)
                    return
                results = await asyncio.gather(
                    *(other.submit(p.input) for p in pending), return_exceptions=True
                )
                for p, res in zip(pending, results, strict=True):
                    if isinstance(res, Outcome):
                        self.hooks.on_fallback(self.settings, exc)
                        res = Outcome(
                            res.output,
                            res.model,
                            res.version,
                            res.latency_s,
                            res.attempts + exc.attempts,
                            fallback=True,
                            usage=res.usage,
                        )
                        _resolve(p.future, res)
                    elif self.settings.has_default_output:
                        self.hooks.on_fallback(self.settings, exc)
                        _resolve(p.future, self._default(exc))
                    else:
                        _fail(p.future, exc)
                return
            if self.settings.has_default_output:
                for p in pending:
                    self.hooks.on_fallback(self.settings, exc)
                    _resolve(p.future, self._default(exc))
                return
        for p in pending:
            _fail(p.future, exc)

    def _default(self, exc: InferenceError) -> Outcome:
        return Outcome(
            self.settings.default_output,
            self.name,
            self.settings.version,
            0.0,
            exc.attempts,
            fallback=True,
        )


_GAP_WEIGHT = 0.125
"""Weight of the newest gap in the arrival-gap average (about the last 8 inputs)."""
_GAP_CAP = 4.0
"""Longest gap counted, in multiples of ``batch_timeout``."""


def _expire(flag: list[bool], wakeup: asyncio.Event) -> None:
    flag[0] = True
    wakeup.set()


def _resolve(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():
        future.set_result(outcome)


def _fail(future: asyncio.Future[Outcome], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _share(usage: Usage | None, n: int) -> Usage | None:
    """Each input's share of a batch's token usage (rounded down)."""
    if usage is None or n == 1:
        return usage
    return Usage(usage.input_tokens // n, usage.output_tokens // n)
