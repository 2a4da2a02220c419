"""Where ``infer()`` meets Faust's consumer: decoding, commits and stopping.

Three things Faust 0.15 does on its own would break "no event lost" under a
pipeline that keeps many events in flight, so ``infer()`` takes them over:

* **Undecodable records.** Faust's conductor acknowledges a record whose key
  or value cannot be deserialized, then throws the error into the stream,
  which ends the agent's iteration. The pipeline's events in flight were then
  stranded, and the record itself was neither output nor dead-lettered.
  :func:`guard_decoding` makes the agent's channel hand such a record over as
  an event whose value is :class:`Undecodable`: it becomes a dead letter in
  its place, and the stream goes on.
* **Commits past an unfinished event.** Faust computes the offset to commit
  from the acknowledged ones and tolerates a one-offset gap at the head
  (``Consumer._new_offset``: ``min(acked) - committed > 1``, meant for
  transaction markers). So if the event *at* the committed offset is still
  in flight while a later one was acknowledged (by the conductor for a bad
  record, by Faust's stream for a record skipped during a rebalance, or by a
  restarted agent), the commit jumps past it, and a crash then loses it for
  good. :class:`CommitGuard` refuses any commit at or beyond the oldest event
  an ``infer()`` pipeline has not finished.
* **Stopping.** Before Faust gives partitions up (a rebalance, a shutdown) it
  waits until every event it handed out is acknowledged. Events waiting for
  a model server that is down would hold that wait for as long as the outage
  lasts. :func:`release_when_suspended` lets go of them after a short grace:
  they stay uncommitted, so the next owner of the partition reads them again.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from faust_inference.exceptions import UndecodableEvent
from faust_inference.results import DeadLetter

if TYPE_CHECKING:
    from faust.types import AppT, ConsumerT

__all__ = ["CommitGuard", "Undecodable", "guard_decoding", "release_when_suspended"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Undecodable:
    """The value of an event whose record could not be deserialized.

    Attributes:
        error: names the record (topic, partition, offset) and the cause.
        raw_key: the record's key bytes, base64.
        raw_value: the record's value bytes, base64.
    """

    error: UndecodableEvent
    raw_key: str | None
    raw_value: str | None


def guard_decoding(app: AppT, channel: Any) -> None:
    """Make ``channel`` (the agent's topic iterator) hand bad records over as events.

    Idempotent. Channels that do not decode (in-memory channels) are left as
    they are.
    """
    from faust.exceptions import KeyDecodeError, ValueDecodeError

    decode = getattr(channel, "decode", None)
    if decode is None or getattr(channel, "_faust_inference_guarded", False):
        return

    def undecodable(exc: Exception, message: Any) -> Any:
        part = "key" if isinstance(exc, KeyDecodeError) else "value"
        cause = str(exc.__cause__ or exc) or type(exc).__name__
        error = UndecodableEvent(part, message.topic, message.partition, message.offset, cause)
        error.__cause__ = exc
        value = Undecodable(
            error, DeadLetter.encode_raw(message.key), DeadLetter.encode_raw(message.value)
        )
        return app.create_event(message.key, value, message.headers, message)

    async def safe_decode(message: Any, *, propagate: bool = False) -> Any:
        try:
            return await decode(message, propagate=True)
        except (KeyDecodeError, ValueDecodeError) as exc:
            return undecodable(exc, message)

    async def on_decode_error(exc: Exception, message: Any) -> None:
        # Another agent's channel on the same topic decoded first and failed:
        # Faust has already acknowledged the record. Dead-letter it anyway,
        # instead of letting the error end this agent's stream.
        message.incref()
        await channel.queue.put(undecodable(exc, message))

    # ``stream.channel`` is typed as an AsyncIterator by Faust; a topic's
    # channel has these methods, replaced on this instance only.
    vars(channel).update(
        decode=safe_decode,
        on_key_decode_error=on_decode_error,
        on_value_decode_error=on_decode_error,
        _faust_inference_guarded=True,
    )


class _OpenEvents(Protocol):
    def oldest_open(self, lane: Hashable) -> int | None: ...


class CommitGuard:
    """Keeps Faust from committing at or past an event a pipeline has not finished.

    One per consumer, installed by the first ``infer()`` agent that starts;
    every pipeline registers itself. The guard wraps the consumer's
    ``_new_offset`` (the one place Faust computes what to commit): when the
    oldest acknowledged offset of a partition is beyond the oldest open one,
    nothing is committed for that partition yet. Otherwise Faust's own
    computation stands, which already stops at the first gap.

    Example:
        >>> guard = CommitGuard.install(app.consumer)  # doctest: +SKIP
        >>> guard.watch(pipeline)                        # doctest: +SKIP
    """

    __slots__ = ("__weakref__", "_pipelines")

    def __init__(self) -> None:
        self._pipelines: weakref.WeakSet[Any] = weakref.WeakSet()

    @classmethod
    def install(cls, consumer: ConsumerT) -> CommitGuard | None:
        """The guard of ``consumer``, wrapping it on first use; None if it cannot be."""
        guard = getattr(consumer, "_faust_inference_commit_guard", None)
        if isinstance(guard, CommitGuard):
            return guard
        original = getattr(consumer, "_new_offset", None)
        acked = getattr(consumer, "_acked", None)
        if original is None or acked is None:
            logger.warning(
                "this Faust consumer has no _new_offset/_acked: the commit guard is off, "
                "so a record Faust acknowledges out of order may be committed past an "
                "event still in flight (see docs/guarantees.md)"
            )
            return None
        guard = cls()
        # Replaced on this consumer instance only (Faust's ConsumerT declares neither).
        vars(consumer).update(
            _new_offset=guard._wrap(original, acked), _faust_inference_commit_guard=guard
        )
        return guard

    def watch(self, pipeline: _OpenEvents) -> None:
        """Count ``pipeline``'s open events from now on (held weakly)."""
        self._pipelines.add(pipeline)

    def floor(self, tp: Hashable) -> int | None:
        """The oldest offset of ``tp`` that some pipeline has not finished."""
        offsets = [o for p in self._pipelines if (o := p.oldest_open(tp)) is not None]
        return min(offsets) if offsets else None

    def _wrap(
        self, original: Callable[[Any], int | None], acked: Any
    ) -> Callable[[Any], int | None]:
        def new_offset(tp: Any) -> int | None:
            floor = self.floor(tp)
            if floor is not None:
                acked_for_tp = acked[tp]
                if acked_for_tp and min(acked_for_tp) > floor:
                    return None
            return original(tp)

        return new_offset


async def release_when_suspended(
    app: AppT, open_handles: Callable[[], list[Any]], *, grace: float = 2.0, poll: float = 0.1
) -> None:
    """Untrack a pipeline's unfinished events whenever Faust suspends the flow.

    Faust suspends flow control before it gives partitions up, then waits
    for every tracked event to be acknowledged. After ``grace`` seconds of
    suspension the events still open are untracked (not acknowledged): the
    wait ends, nothing is committed past them (the :class:`CommitGuard`
    sees to it), and the next owner reads them again. Runs until cancelled.
    """
    flow = app.flow_control
    consumer = app.consumer
    tracked = getattr(consumer, "_unacked_messages", None)
    if tracked is None:
        return
    loop = asyncio.get_running_loop()
    # Polled: Faust's flow control has no public way to wait for a suspension.
    while True:
        await asyncio.sleep(poll)
        if flow.is_active():
            continue
        since = loop.time()
        while not flow.is_active() and loop.time() - since < grace:  # noqa: ASYNC110
            await asyncio.sleep(poll)
        if flow.is_active():
            continue
        handles = open_handles()
        released = 0
        for event in handles:
            message = event.message
            if not message.acked and message in tracked:
                tracked.discard(message)
                released += 1
        if released:
            logger.info(
                "flow suspended (rebalance or shutdown): released %d unfinished event(s); "
                "they are not committed and will be read again",
                released,
            )
        while not flow.is_active():  # noqa: ASYNC110
            await asyncio.sleep(poll)
