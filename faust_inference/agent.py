"""``infer()``: the agent decorator that scores each event of a Faust stream.

The agent function receives one :class:`~faust_inference.InferenceResult`
per event instead of the raw stream::

    @app.agent(transactions)
    @infer(fraud, dead_letter="transactions.dlq")
    async def score(results):
        async for r in results:
            await scores.send(key=r.event.id, value={"p_fraud": r.output[1]})

Commit safety: the stream is switched to manual acknowledgement
(``stream.noack()``), and an event is acknowledged only after the agent asked
for the next result (it is done with this one) or its dead letter was sent,
always in offset order within a partition. Faust flushes the producer before
each commit, so by the time an offset is committed, everything the agent sent
for it, and every dead letter, is on the broker. A crash in between means the
event is delivered again: at least once, never lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import orjson

from faust_inference.app import RemoteModel
from faust_inference.cache import require_same_partitions
from faust_inference.core.pipeline import Envelope, StreamInference
from faust_inference.exceptions import ConfigurationError
from faust_inference.lifecycle.plane import stream_router
from faust_inference.providers.redaction import scrub, secrets_of
from faust_inference.results import DeadLetter
from faust_inference.startup import check_before_consuming, stop_worker
from faust_inference.stream_guard import (
    CommitGuard,
    Undecodable,
    guard_decoding,
    release_when_suspended,
)

if TYPE_CHECKING:
    from faust.streams import Stream
    from faust.types import AppT, ConsumerT, Message, TopicT

__all__ = ["infer"]

logger = logging.getLogger(__name__)

AgentFun = TypeVar("AgentFun", bound=Callable[..., Any])


def infer(
    model: RemoteModel,
    *,
    dead_letter: str | TopicT | None = None,
    ordered: bool = True,
    max_pending: int | None = None,
    preprocess: Callable[[Any], Any] | None = None,
) -> Callable[[AgentFun], AgentFun]:
    """Turn an agent over events into an agent over inference results.

    Args:
        model: the registered model to call.
        dead_letter: topic name (or Faust topic) for events whose inference
            finally failed. Without one, such events reach the agent as
            results with ``error`` set and ``output`` None.
        ordered: hand results out in input order within each partition (the
            default); ``False`` lets fast results overtake slow ones.
            Acknowledgements stay in offset order either way.
        max_pending: events read ahead of the agent, in flight or waiting
            (default: ``2 * max_concurrency * batch_size``, at least 64).
            Reading pauses at this bound, slowing consumption instead of
            piling up memory.
        preprocess: overrides the model's preprocessor for this agent.

    Returns:
        A decorator for an agent function taking the results iterator; put it
        below ``@app.agent(...)``.
    """
    if not isinstance(model, RemoteModel):
        raise ConfigurationError(
            f"infer() takes the model app.model(...) returned, got {type(model).__name__} "
            f"{model!r}: write 'fraud = app.model(\"fraud\", ...)' and then '@infer(fraud)'"
            + (f" (or @infer(app.inference[{model!r}]))" if isinstance(model, str) else "")
        )
    if max_pending is not None and (
        isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1
    ):
        raise ConfigurationError(
            f"infer({model.name!r}, max_pending={max_pending!r}): max_pending must be a "
            "positive int (events read ahead of the agent), or None for the default"
        )
    settings = model.settings
    pending = max_pending or max(64, 2 * settings.max_concurrency * model.runner.batch_size)

    def decorate(fun: AgentFun) -> AgentFun:
        is_async = inspect.iscoroutinefunction(fun) or inspect.isasyncgenfunction(fun)
        if hasattr(fun, "channel") or not is_async:
            raise ConfigurationError(
                f"@infer({model.name!r}) must decorate the agent's async function, below "
                f"@app.agent(...), got {type(fun).__name__} {fun!r}: write "
                "'@app.agent(topic)' first and '@infer(model, ...)' on the line under it"
            )

        def results(stream: Stream[Any]) -> StreamInference[Any]:
            # Looked up when the agent starts, so that the preprocessor may be
            # registered anywhere in the module, even below the agent.
            prepare = preprocess or model.preprocessor
            return _stream_inference(
                stream, model, prepare, dead_letter, ordered=ordered, max_pending=pending
            )

        # When the agent's own code raises, the agent function is called
        # again on the same pipeline: the events in flight stay with it (an
        # event whose result it was handling is dead-lettered first).
        # Letting Faust restart the agent instead would strand them
        # unacknowledged, blocking commits and every later rebalance.
        if inspect.isasyncgenfunction(fun):

            async def agen_agent(stream: Stream[Any]) -> AsyncIterator[Any]:
                pipeline = results(stream)
                release = _release_task(stream, pipeline)
                try:
                    while True:
                        try:
                            async for value in fun(pipeline):
                                yield value
                            return
                        except Exception as exc:
                            if not await _survive(pipeline, exc):
                                raise
                finally:
                    release.cancel()

            wrapper: Callable[..., Any] = agen_agent
        else:

            async def agent(stream: Stream[Any]) -> Any:
                pipeline = results(stream)
                release = _release_task(stream, pipeline)
                try:
                    while True:
                        try:
                            return await fun(pipeline)
                        except Exception as exc:
                            if not await _survive(pipeline, exc):
                                raise
                finally:
                    release.cancel()

            wrapper = agent
        functools.update_wrapper(wrapper, fun)
        # Faust inspects the agent to know whether it yields: it must see the
        # wrapper itself, not ``fun`` through ``__wrapped__``.
        del wrapper.__wrapped__  # type: ignore[attr-defined]
        return cast(AgentFun, wrapper)

    return decorate


_RESTART_PAUSE = 1.0
"""Seconds before the agent function is called again after it raised outside a result."""


async def _survive(pipeline: StreamInference[Any], exc: Exception) -> bool:
    """Whether the agent function may be called again on ``pipeline`` after ``exc``."""
    if pipeline.holding:
        if await pipeline.reject_current(exc):
            logger.warning(
                "the agent raised on a result: its event was dead-lettered", exc_info=exc
            )
        return True
    if not pipeline.open:
        return False  # nothing in flight: Faust's own restart strands nothing
    # Raised outside a result with events in flight: a restart by Faust
    # would strand them. Keep the pipeline and call the agent again.
    logger.error(
        "the agent raised outside a result with %d event(s) in flight; calling it again "
        "in %gs on the same stream",
        pipeline.open,
        _RESTART_PAUSE,
        exc_info=exc,
    )
    await asyncio.sleep(_RESTART_PAUSE)
    return True


def _release_task(stream: Stream[Any], pipeline: StreamInference[Any]) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(
        release_when_suspended(stream.app, pipeline.open_handles),
        name="faust-inference:release-on-suspend",
    )


def _stream_inference(
    stream: Stream[Any],
    model: RemoteModel,
    prepare: Callable[[Any], Any] | None,
    dead_letter: str | TopicT | None,
    *,
    ordered: bool,
    max_pending: int,
) -> StreamInference[Any]:
    app = stream.app
    guard_decoding(app, stream.channel)
    manual = stream.noack()
    dlq_topic = _resolve_topic(app, dead_letter)
    sender = _DeadLetterSender(app, dlq_topic, model) if dlq_topic is not None else None

    cache = model.cache
    checked: set[str] = set()

    async def envelopes() -> AsyncIterator[Envelope[Any]]:
        try:
            await check_before_consuming(app, stream, model)
        except ConfigurationError as exc:
            await _halt(app, exc)
        consumer = app.consumer
        async for event in manual.events():
            message = event.message
            if cache is not None and message.topic not in checked:
                # A topic only known now (a pattern subscription).
                try:
                    require_same_partitions(cache, message.topic)
                except ConfigurationError as exc:
                    await _halt(app, exc)
                checked.add(message.topic)
            value = event.value
            if isinstance(value, Undecodable):
                yield Envelope(
                    value=value,
                    lane=message.tp,
                    handle=event,
                    key=message.key,
                    partition=message.partition,
                    offset=message.offset,
                    error=value.error,
                )
                continue
            yield Envelope(
                value=value,
                lane=message.tp,
                handle=event,
                key=event.key,
                partition=message.partition,
                offset=message.offset,
                backlog=_backlog(consumer, message),
            )

    async def ack(envelope: Envelope[Any]) -> None:
        await manual.ack(envelope.handle)

    pipeline = StreamInference(
        model.runner,
        envelopes(),
        ack=ack,
        prepare=prepare,
        dead_letter=sender.send if sender is not None else None,
        ordered=ordered,
        max_pending=max_pending,
        cache=cache,
        route=stream_router(app, model),
    )
    guard = CommitGuard.install(app.consumer)
    if guard is not None:
        guard.watch(pipeline)
    return pipeline


def _backlog(consumer: ConsumerT, message: Message) -> int:
    """Records after ``message`` already in its partition: the consumer's lag there.

    Read from the consumer's last fetch (no request to the broker), so it
    costs a lookup per event. Zero when unknown: nothing waits then.
    """
    try:
        highwater = consumer.highwater(message.tp)
    except Exception:  # the partition was just revoked, or no fetch yet
        return 0
    if not highwater:
        return 0
    return max(0, highwater - message.offset - 1)


class _DeadLetterSender:
    """Produces dead letters; a letter that cannot be produced is never dropped.

    A letter too big for the producer is cut down (see
    :meth:`DeadLetter.shrunk`) and sent; any other failure (the broker is
    away) is retried with backoff, holding the event unacknowledged, until
    it is sent or the worker stops.
    """

    __slots__ = ("_declared", "_limit", "model", "topic")

    def __init__(self, app: AppT, topic: TopicT, model: RemoteModel) -> None:
        self.topic = topic
        self.model = model
        self._declared = False
        # Room for the record's own overhead and the key within the
        # producer's request limit.
        self._limit = int(getattr(app.conf, "producer_max_request_size", 1_000_000) * 0.9)

    async def send(self, envelope: Envelope[Any], error: BaseException) -> None:
        value = envelope.value
        raw: dict[str, Any] = {}
        if isinstance(value, Undecodable):
            raw = {"raw_key": value.raw_key, "raw_value": value.raw_value}
            value = None
        letter = DeadLetter.from_error(
            error,
            event=value,
            model=self.model.name,
            version=self.model.settings.version,
            key=envelope.key,
            topic=envelope.handle.message.topic,
            partition=envelope.partition,
            offset=envelope.offset,
            **raw,
        )
        # Providers scrub their errors already; an agent's own exception or a
        # preprocessor's message may still quote a credential.
        secrets = secrets_of(self.model.runner.provider)
        if secrets:
            letter = dataclasses.replace(letter, error=scrub(letter.error, secrets))
        payload = letter.as_dict()
        size = _encoded_size(payload)
        if size > self._limit:
            letter = letter.shrunk(size)
            payload = letter.as_dict()
        await self._produce(letter.key, payload)
        # One line per dead letter: they are rare by design, and each one is a
        # question someone will ask ("where did event X go?").
        logger.warning(
            "model %r: event at %s[%s]@%s dead-lettered to %s after %d attempt(s): %s: %s%s",
            self.model.name,
            letter.topic,
            letter.partition,
            letter.offset,
            self.topic.get_topic_name(),
            letter.attempts,
            letter.error_class,
            letter.error[:500],
            f" (letter cut down from {size} bytes)" if letter.truncated else "",
        )

    async def _produce(self, key: Any, payload: dict[str, Any]) -> None:
        delay, failures = 0.5, 0
        while True:
            try:
                if not self._declared:
                    # Created like Faust creates an agent's own topics, so dead
                    # letters do not depend on the broker auto-creating topics;
                    # once: Faust 0.15 does not cache maybe_declare().
                    await self.topic.maybe_declare()
                    self._declared = True
                await self.topic.send(key=key, value=payload)
                if failures:
                    logger.warning(
                        "dead-letter topic %s: sent after %d failed attempt(s)",
                        self.topic.get_topic_name(),
                        failures,
                    )
                return
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    logger.error(
                        "dead-letter topic %s: could not send (%s: %s); the event stays "
                        "unacknowledged and the letter is retried every %gs at most",
                        self.topic.get_topic_name(),
                        type(exc).__name__,
                        str(exc)[:300],
                        _MAX_DLQ_BACKOFF,
                    )
                if failures == 1 and _is_encoding_problem(exc):
                    # Not the broker's fault: send what can be sent.
                    payload = {**payload, "event": repr(payload.get("event"))[:10_000]}
                    continue
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_DLQ_BACKOFF)


_MAX_DLQ_BACKOFF = 10.0


def _encoded_size(payload: dict[str, Any]) -> int:
    try:
        return len(orjson.dumps(payload, default=repr))
    except TypeError:
        return len(repr(payload))


def _is_encoding_problem(exc: BaseException) -> bool:
    return isinstance(exc, TypeError | ValueError) and not type(exc).__module__.startswith(
        ("aiokafka", "kafka")
    )


async def _halt(app: AppT, error: ConfigurationError) -> None:
    """Stop the worker for ``error`` and read nothing meanwhile (never returns)."""
    await stop_worker(app, error)
    await asyncio.Event().wait()  # until the worker's stop cancels the agent


def _resolve_topic(app: AppT, topic: str | TopicT | None) -> TopicT | None:
    if topic is None or not isinstance(topic, str):
        return topic
    return app.topic(topic, value_serializer="json")
