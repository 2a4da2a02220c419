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

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

from faust_inference.app import RemoteModel
from faust_inference.cache import require_same_partitions
from faust_inference.core.pipeline import Envelope, StreamInference
from faust_inference.results import DeadLetter

__all__ = ["infer"]

logger = logging.getLogger(__name__)

AgentFun = TypeVar("AgentFun", bound=Callable[..., Any])


def infer(
    model: RemoteModel,
    *,
    dead_letter: Any = None,
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
    settings = model.settings
    pending = max_pending or max(64, 2 * settings.max_concurrency * settings.batch_size)

    def decorate(fun: AgentFun) -> AgentFun:
        def results(stream: Any) -> StreamInference[Any]:
            # Looked up when the agent starts, so that the preprocessor may be
            # registered anywhere in the module, even below the agent.
            prepare = preprocess or model.preprocessor
            return _stream_inference(
                stream, model, prepare, dead_letter, ordered=ordered, max_pending=pending
            )

        # When the agent's own code raises on a result, that event is
        # dead-lettered (with the agent's error) and the agent function is
        # called again on the same pipeline: the events in flight stay with
        # it. Letting Faust restart the agent instead would strand them
        # unacknowledged, blocking commits and every later rebalance.
        if inspect.isasyncgenfunction(fun):

            async def agen_agent(stream: Any) -> AsyncIterator[Any]:
                pipeline = results(stream)
                while True:
                    try:
                        async for value in fun(pipeline):
                            yield value
                        return
                    except Exception as exc:
                        if not await _survive(pipeline, exc):
                            raise

            wrapper: Callable[..., Any] = agen_agent
        else:

            async def agent(stream: Any) -> Any:
                pipeline = results(stream)
                while True:
                    try:
                        return await fun(pipeline)
                    except Exception as exc:
                        if not await _survive(pipeline, exc):
                            raise

            wrapper = agent
        functools.update_wrapper(wrapper, fun)
        # Faust inspects the agent to know whether it yields: it must see the
        # wrapper itself, not ``fun`` through ``__wrapped__``.
        del wrapper.__wrapped__  # type: ignore[attr-defined]
        return cast(AgentFun, wrapper)

    return decorate


async def _survive(pipeline: StreamInference[Any], exc: Exception) -> bool:
    """Whether the agent may go on after ``exc``: it failed on one result only."""
    if not pipeline.holding:
        return False  # raised outside a result: let Faust handle the crash
    if await pipeline.reject_current(exc):
        logger.warning("the agent raised on a result: its event was dead-lettered", exc_info=exc)
    return True


def _stream_inference(
    stream: Any,
    model: RemoteModel,
    prepare: Callable[[Any], Any] | None,
    dead_letter: Any,
    *,
    ordered: bool,
    max_pending: int,
) -> StreamInference[Any]:
    app = stream.app
    registry = getattr(app, "inference", None)
    if registry is not None:
        registry.check()
    manual = stream.noack()
    dlq_topic = _resolve_topic(app, dead_letter)

    cache = model.cache
    checked: set[str] = set()

    async def envelopes() -> AsyncIterator[Envelope[Any]]:
        async for event in manual.events():
            message = event.message
            if cache is not None and message.topic not in checked:
                require_same_partitions(cache, message.topic)
                checked.add(message.topic)
            yield Envelope(
                value=event.value,
                lane=message.tp,
                handle=event,
                key=event.key,
                partition=message.partition,
                offset=message.offset,
            )

    async def ack(envelope: Envelope[Any]) -> None:
        await manual.ack(envelope.handle)

    async def send_dead_letter(envelope: Envelope[Any], error: BaseException) -> None:
        assert dlq_topic is not None
        letter = DeadLetter.from_error(
            error,
            event=envelope.value,
            model=model.name,
            version=model.version,
            key=envelope.key,
            topic=envelope.handle.message.topic,
            partition=envelope.partition,
            offset=envelope.offset,
        )
        # Created like Faust creates an agent's own topics (once; cached), so
        # dead letters do not depend on the broker auto-creating topics.
        await dlq_topic.maybe_declare()
        await dlq_topic.send(key=envelope.key, value=letter.as_dict())
        # One line per dead letter: they are rare by design, and each one is a
        # question someone will ask ("where did event X go?").
        logger.warning(
            "model %r: event at %s[%s]@%s dead-lettered to %s after %d attempt(s): %s: %s",
            model.name,
            letter.topic,
            letter.partition,
            letter.offset,
            dlq_topic.get_topic_name(),
            letter.attempts,
            letter.error_class,
            letter.error,
        )

    return StreamInference(
        model.runner,
        envelopes(),
        ack=ack,
        prepare=prepare,
        dead_letter=send_dead_letter if dlq_topic is not None else None,
        ordered=ordered,
        max_pending=max_pending,
        cache=cache,
    )


def _resolve_topic(app: Any, topic: Any) -> Any:
    if topic is None or not isinstance(topic, str):
        return topic
    return app.topic(topic, value_serializer="json")
