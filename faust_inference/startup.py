"""Checks an ``infer()`` agent runs before it reads its first event.

Misconfiguration must stop a worker once, at start-up, with the fix in the
message: not on the first event, and not in a loop of agent restarts. These
checks need the running worker (topic metadata, the model server), so they
cannot run at registration; they run when the agent starts, before it
consumes, and a failure crashes the worker (non-zero exit) after one log line.

* every ``fallback=`` names a registered model;
* a partitioned result cache has as many partitions as each source topic
  (from the broker's metadata);
* each model's server serves it, where the protocol has a readiness call
  (``provider.ready()``): a missing model or a wrong path is a configuration
  error naming the URL tried. A server that is not up yet is waited for
  :data:`FIRST_ANSWER_WAIT` seconds, then the agent consumes (an outage is
  what the circuit breaker and ``outage_budget`` are for) while the check
  goes on for up to :data:`READY_WAIT` seconds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any

from faust_inference.app import ModelRegistry
from faust_inference.cache import require_same_partitions
from faust_inference.exceptions import (
    ConfigurationError,
    InferenceError,
    ModelNotFound,
    TransportError,
)

if TYPE_CHECKING:
    from faust.types import AppT, StreamT

    from faust_inference.app import RemoteModel
    from faust_inference.core.provider import Provider

__all__ = ["FIRST_ANSWER_WAIT", "READY_WAIT", "check_before_consuming", "stop_worker"]


logger = logging.getLogger(__name__)

READY_WAIT = 60.0
"""Seconds a worker waits at start-up for a model server that does not answer yet."""

FIRST_ANSWER_WAIT = 5.0
"""Seconds an agent waits for its model's first readiness answer before it consumes."""

_METADATA_WAIT = 30.0


async def check_before_consuming(app: AppT, stream: StreamT[Any], model: RemoteModel) -> None:
    """Run the start-up checks of one ``infer()`` agent.

    Raises:
        ConfigurationError: a check failed; the message says what to change.
    """
    registry = getattr(app, "inference", None)
    if not isinstance(registry, ModelRegistry):
        registry = None
    else:
        registry.check()
    if model.cache is not None:
        for topic in _source_topics(stream):
            await _metadata(app, topic)
            require_same_partitions(model.cache, topic)
    await _ready(app, registry, model)


async def stop_worker(app: AppT, error: BaseException) -> None:
    """Log ``error`` once and crash the worker, which then exits non-zero."""
    logger.error("faust-inference: the worker cannot start: %s", error)
    crash = getattr(app, "crash", None)
    if crash is not None:
        await crash(error)


def _source_topics(stream: StreamT[Any]) -> list[str]:
    channel = getattr(stream, "channel", None)
    topics = getattr(channel, "topics", None)
    return [t for t in topics or () if isinstance(t, str)]


async def _metadata(app: AppT, topic: str) -> None:
    """Wait until the consumer knows ``topic``'s partitions (bounded)."""
    consumer = app.consumer
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _METADATA_WAIT
    # Polled: the consumer has no event for "metadata of this topic arrived".
    while consumer.topic_partitions(topic) is None and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)


async def _ready(app: AppT, registry: ModelRegistry | None, model: RemoteModel) -> None:
    """Each model checked once per worker, however many agents use it.

    The agent waits for the first answer only briefly: a server that is down
    or failing is an outage, which events wait through anyway. The check goes
    on in the background, and a late "no such model" still stops the worker.
    """
    checks = registry.ready_checks if registry is not None else {}
    task = checks.get(model.name)
    if task is None:
        task = checks[model.name] = asyncio.get_running_loop().create_task(_wait_ready(model))
    done, _ = await asyncio.wait({task}, timeout=FIRST_ANSWER_WAIT)
    if task in done:
        task.result()  # raises the ConfigurationError, if any
        return
    watched = registry.ready_watched if registry is not None else set()
    if model.name not in watched:
        watched.add(model.name)
        task.add_done_callback(functools.partial(_stop_if_misconfigured, app))


def _stop_if_misconfigured(app: AppT, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and isinstance(task.exception(), ConfigurationError):
        error = task.exception()
        assert error is not None
        asyncio.get_running_loop().create_task(stop_worker(app, error))


async def _wait_ready(model: RemoteModel) -> None:
    runners = [model.runner]
    versions = getattr(model, "_versions", None)  # added with add_version(), if any
    if versions is not None:
        runners += [r for r in versions.runners.values() if r is not model.runner]
    await asyncio.gather(*(_wait_provider(model.name, r.provider) for r in runners))


async def _wait_provider(name: str, provider: Provider) -> None:
    ready = getattr(provider, "ready", None)
    if ready is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_WAIT
    delay, last = 0.5, None
    while loop.time() < deadline:
        try:
            await ready()
            return
        except ModelNotFound as exc:
            raise ConfigurationError(f"model {name!r}: {exc}") from None
        except ConfigurationError:
            raise
        except (TransportError, InferenceError) as exc:
            if last is None:
                logger.warning(
                    "model %r: its server is not ready yet (%s); consuming meanwhile (events "
                    "wait within outage_budget), checking again for up to %gs",
                    name,
                    exc,
                    READY_WAIT,
                )
            last = exc
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
    logger.warning(
        "model %r: its server was still not ready after %gs (%s); no more start-up "
        "checks: events wait for it within outage_budget",
        name,
        READY_WAIT,
        last,
    )
