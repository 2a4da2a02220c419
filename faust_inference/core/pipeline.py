"""Fan a stream of events out to a model, and bring the results back in order.

This is the part of ``infer()`` that knows nothing about Faust: events come
in as :class:`Envelope` objects, results go out as an async iterator, and two
callbacks report back when an event is finished (``ack``) or failed for good
(``dead_letter``).

Two orders matter and they are kept apart:

* the order results are *handed to the agent*: per lane (a Kafka partition)
  in input order by default, or as they complete with ``ordered=False``;
* the order events are *acknowledged*: always per lane in input order, and
  only once the agent has moved past the result (or the dead letter was
  produced). A committed offset therefore never passes an event whose result
  is still pending, whatever order results were handed out in.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from faust_inference.config import ModelSettings
from faust_inference.core.cache import ResultCache
from faust_inference.core.hooks import EventOutcome
from faust_inference.core.runner import InferenceRunner, Outcome
from faust_inference.exceptions import ConfigurationError, InferenceError, InvalidInput
from faust_inference.results import InferenceResult

__all__ = ["Envelope", "StreamInference"]

logger = logging.getLogger(__name__)

H = TypeVar("H")


@dataclass(slots=True)
class Envelope(Generic[H]):
    """One event as the pipeline sees it.

    Attributes:
        value: the event value handed to the preprocessor.
        lane: what results are ordered and acknowledged within (a topic-partition).
        handle: whatever the caller needs to acknowledge the event later.
        key: the event key, copied into the result.
        partition: the source partition, copied into the result.
        offset: the source offset, copied into the result.
        error: why this event failed before it reached the pipeline (its
            record could not be decoded, say): it is handed out, or
            dead-lettered, in its place in the lane, like any failed event.
        backlog: events known to wait behind this one at the source (its
            partition's consumer lag); batches fill from them while the
            stream is behind (see :mod:`faust_inference.core.runner`).
    """

    value: Any
    lane: Hashable
    handle: H
    key: Any = None
    partition: int | None = None
    offset: int | None = None
    error: BaseException | None = None
    backlog: int = 0


class _Entry:
    __slots__ = ("done", "envelope", "error", "future", "handled", "read_at", "settings", "variant")

    def __init__(self, envelope: Envelope[Any], read_at: float) -> None:
        self.envelope = envelope
        self.read_at = read_at
        self.future: asyncio.Future[Outcome] | None = None
        self.error: BaseException | None = None
        self.done = False
        self.handled = False
        self.settings: ModelSettings | None = None
        self.variant: str | None = None


class StreamInference(Generic[H]):
    """Runs each event of ``source`` through ``runner``; iterate it for the results.

    Example:
        >>> async def agent(runner, events, ack):
        ...     async for result in StreamInference(runner, events, ack=ack):
        ...         print(result.event, result.output)

    Args:
        runner: the model's runner.
        source: the events, as envelopes.
        ack: called once per event, per lane in input order, after the agent
            moved past its result or its dead letter was produced.
        prepare: turns an event value into the model input; may raise to
            reject the event.
        dead_letter: called with events that finally failed; without it
            failed events are handed to the agent as results with ``error`` set.
        ordered: hand results out in input order per lane (the default), or
            as soon as each is ready.
        max_pending: events taken from the source but not yet acknowledged
            (an int, at least 1); reading pauses at this bound, which is the
            backpressure on Kafka.
        cache: answers known inputs and records new results; events are
            submitted through it with their partition.
        route: submits one event's model input to the version that answers
            it and returns (future, that version's settings, variant);
            replaces the runner and the cache when given (see
            :mod:`faust_inference.lifecycle`). Hooks then see the version's
            settings, so metrics carry its version label.

    Raises:
        ConfigurationError: ``max_pending`` is not a whole number of at least 1.
    """

    def __init__(
        self,
        runner: InferenceRunner,
        source: AsyncIterable[Envelope[H]],
        *,
        ack: Callable[[Envelope[H]], Awaitable[object]],
        prepare: Callable[[Any], Any] | None = None,
        dead_letter: Callable[[Envelope[H], BaseException], Awaitable[object]] | None = None,
        ordered: bool = True,
        max_pending: int = 256,
        cache: ResultCache | None = None,
        route: Callable[
            [Envelope[H], Any], tuple[asyncio.Future[Outcome], ModelSettings, str | None]
        ]
        | None = None,
    ) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ConfigurationError(
                f"max_pending must be a whole number of at least 1, got {max_pending!r}: it "
                "bounds the events read but not yet acknowledged (default 256); raise it for "
                "more in flight, lower it for less memory and redelivery after a crash"
            )
        self._runner = runner
        self._cache = cache
        self._route = route
        self._hooks = runner.hooks
        self._source = source
        self._ack = ack
        self._prepare = prepare
        self._dead_letter = dead_letter
        self._ordered = ordered
        self._room = asyncio.Semaphore(max_pending)
        self._waiting: dict[Hashable, deque[_Entry]] = {}
        self._unacked: dict[Hashable, deque[_Entry]] = {}
        self._ready: deque[_Entry] = deque()
        self._wakeup = asyncio.Event()
        self._open = 0
        self._source_done = False
        self._source_error: BaseException | None = None
        self._current: _Entry | None = None
        self._iterator: AsyncIterator[InferenceResult[Any]] | None = None

    def __aiter__(self) -> AsyncIterator[InferenceResult[Any]]:
        # One iterator for the pipeline's life: an agent that raised can
        # iterate again and carry on after the result it failed on.
        if self._iterator is None:
            self._iterator = self._results()
        return self._iterator

    @property
    def holding(self) -> bool:
        """Whether the agent holds a result right now (between two iterations)."""
        return self._current is not None

    @property
    def open(self) -> int:
        """Events taken from the source and not acknowledged yet."""
        return self._open

    def oldest_open(self, lane: Hashable) -> int | None:
        """Offset of the oldest event of ``lane`` not acknowledged yet, if any.

        Nothing at or after it may be committed: the commit guard asks this.
        """
        open_in_lane = self._unacked.get(lane)
        return open_in_lane[0].envelope.offset if open_in_lane else None

    def open_handles(self) -> list[H]:
        """Handles of every event not acknowledged yet, oldest first per lane."""
        return [entry.envelope.handle for lane in self._unacked.values() for entry in lane]

    async def reject_current(self, error: BaseException) -> bool:
        """The agent failed while handling the last result: dead-letter that event.

        Without a dead-letter callback the event is only reported (logged);
        either way it counts as handled, so iterating again continues with
        the next result and the event's offset can be committed.

        Returns:
            Whether a dead letter was sent.
        """
        entry, self._current = self._current, None
        if entry is None:
            return False
        if self._dead_letter is None:
            logger.error(
                "model %r: the agent raised on the result of the event at partition %s, "
                "offset %s, which is skipped (pass dead_letter= to keep such events)",
                self._runner.name,
                entry.envelope.partition,
                entry.envelope.offset,
                exc_info=error,
            )
            return False
        await self._dead_letter(entry.envelope, error)
        self._hooks.on_dead_letter(self._runner.settings, error)
        return True

    async def _results(self) -> AsyncIterator[InferenceResult[Any]]:
        reader = asyncio.get_running_loop().create_task(self._read())
        ready, wakeup = self._ready, self._wakeup
        try:
            while True:
                if not ready:
                    # A broken source ends the iteration only once every event
                    # already read is finished: none is left unacknowledged.
                    if self._source_done and not self._open:
                        if self._source_error is not None:
                            raise self._source_error
                        return
                    wakeup.clear()
                    await wakeup.wait()
                    continue
                entry = ready.popleft()
                if entry.error is not None and self._dead_letter is not None:
                    await self._dead_letter(entry.envelope, entry.error)
                    self._hooks.on_dead_letter(entry.settings or self._runner.settings, entry.error)
                    self._event_done(entry, "dead_letter")
                else:
                    self._current = entry
                    result = self._result(entry)
                    self._event_done(entry, _outcome_of(result))
                    yield result
                    self._current = None
                # The agent asked for the next result (or was done with this
                # one through reject_current): acknowledge it.
                await self._handled(entry)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self) -> None:
        runner, prepare, room, cache = self._runner, self._prepare, self._room, self._cache
        now = asyncio.get_running_loop().time
        try:
            async for envelope in self._source:
                # Counted as open before waiting for room: the source has
                # handed it over (Faust tracks it), so a stop must see it.
                entry = _Entry(envelope, now())
                self._open += 1
                lane = envelope.lane
                self._unacked.setdefault(lane, deque()).append(entry)
                if self._ordered:
                    self._waiting.setdefault(lane, deque()).append(entry)
                await room.acquire()
                entry.read_at = now()
                if envelope.error is not None:
                    self._finish(entry, envelope.error)
                    continue
                try:
                    value = envelope.value if prepare is None else prepare(envelope.value)
                except InferenceError as exc:
                    self._finish(entry, exc)
                    continue
                except Exception as exc:
                    error = InvalidInput(
                        "event", f"preprocessing raised {type(exc).__name__}: {exc}"
                    )
                    error.__cause__ = exc
                    self._finish(entry, error)
                    continue
                # Outside the try: a closed runner (the worker is stopping) is
                # not the event's fault and must not dead-letter it.
                if self._route is not None:
                    future, entry.settings, entry.variant = self._route(envelope, value)
                elif cache is None:
                    future = runner.submit(value, backlog=envelope.backlog)
                else:
                    future = cache.submit(value, envelope.partition, backlog=envelope.backlog)
                entry.future = future
                future.add_done_callback(functools.partial(self._on_outcome, entry))
        except Exception as exc:
            self._source_error = exc
        finally:
            self._source_done = True
            self._wakeup.set()

    def _on_outcome(self, entry: _Entry, future: asyncio.Future[Outcome]) -> None:
        # A cancelled call means the worker is stopping: the event is neither
        # a result nor a dead letter, and stays unacknowledged for redelivery.
        if not future.cancelled():
            self._finish(entry, future.exception())

    def _finish(self, entry: _Entry, error: BaseException | None) -> None:
        entry.done = True
        entry.error = error
        if self._ordered:
            lane = self._waiting[entry.envelope.lane]
            while lane and lane[0].done:
                self._ready.append(lane.popleft())
        else:
            self._ready.append(entry)
        self._wakeup.set()

    async def _handled(self, entry: _Entry) -> None:
        if self._ordered:
            # Handed out in lane order, so it is the oldest unacknowledged one.
            self._unacked[entry.envelope.lane].popleft()
            await self._release(entry)
            return
        entry.handled = True
        lane = self._unacked[entry.envelope.lane]
        while lane and lane[0].handled:
            await self._release(lane.popleft())

    def _event_done(self, entry: _Entry, outcome: EventOutcome) -> None:
        latency = asyncio.get_running_loop().time() - entry.read_at
        self._hooks.on_event_done(entry.settings or self._runner.settings, outcome, latency)

    async def _release(self, entry: _Entry) -> None:
        await self._ack(entry.envelope)
        self._open -= 1
        self._room.release()

    def _result(self, entry: _Entry) -> InferenceResult[Any]:
        env = entry.envelope
        if entry.error is not None:
            return InferenceResult(
                event=env.value,
                output=None,
                model=self._runner.name,
                version=(entry.settings or self._runner.settings).version,
                variant=entry.variant,
                attempts=getattr(entry.error, "attempts", 0),
                key=env.key,
                partition=env.partition,
                offset=env.offset,
                error=entry.error,
            )
        assert entry.future is not None
        o = entry.future.result()
        return InferenceResult(
            event=env.value,
            output=o.output,
            model=o.model,
            version=o.version,
            variant=entry.variant,
            latency_s=o.latency_s,
            attempts=o.attempts,
            fallback=o.fallback,
            cached=o.cached,
            key=env.key,
            partition=env.partition,
            offset=env.offset,
            usage=o.usage,
        )


def _outcome_of(result: InferenceResult[Any]) -> EventOutcome:
    if result.error is not None:
        return "error"
    if result.cached:
        return "cached"
    return "fallback" if result.fallback else "ok"
