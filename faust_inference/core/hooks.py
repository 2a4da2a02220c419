"""What the inference core reports while it works: typed no-op hooks.

The core knows nothing of Prometheus or Faust sensors; it calls these hooks
at the points an operator wants to count or time, and whatever observes the
core (the Prometheus sensor, a test) overrides the ones it needs. The shape
is Faust's own ``Sensor``/``SensorDelegate``: a base class whose methods do
nothing, and a delegate that fans one call out to many observers.

Hooks run on the event loop, inline, once per request or event: they must be
cheap and must not raise (a raising hook is logged and ignored by
:class:`HooksDelegate`).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from typing_extensions import override

from faust_inference.config import ModelSettings
from faust_inference.results import Usage

__all__ = ["EventOutcome", "HooksDelegate", "InferenceHooks"]

logger = logging.getLogger(__name__)

EventOutcome = Literal["ok", "fallback", "cached", "error", "dead_letter"]
"""How one event ended: ``cached`` when a cache answered it without a call."""


class InferenceHooks:
    """Override the hooks you need; every one does nothing by default.

    ``settings`` is the model's registration (name, version, provider) so an
    observer can label what it records without a lookup.
    """

    def on_request_start(self, settings: ModelSettings, batch_size: int) -> None:
        """A request carrying ``batch_size`` inputs is about to be sent."""

    def on_request_end(
        self,
        settings: ModelSettings,
        batch_size: int,
        duration_s: float,
        error: BaseException | None,
        usage: Usage | None,
    ) -> None:
        """One attempt of a request ended, successfully when ``error`` is None."""

    def on_retry(self, settings: ModelSettings, error: BaseException, delay_s: float) -> None:
        """A failed attempt will be retried after ``delay_s`` seconds."""

    def on_fallback(self, settings: ModelSettings, error: BaseException) -> None:
        """An input of this model is answered by its fallback or default output."""

    def on_cache(self, settings: ModelSettings, hit: bool) -> None:
        """The result cache was asked for one input."""

    def on_event_done(
        self, settings: ModelSettings, outcome: EventOutcome, latency_s: float
    ) -> None:
        """An event of a stream finished: ``latency_s`` from read to result or dead letter."""

    def on_dead_letter(self, settings: ModelSettings, error: BaseException) -> None:
        """An event was sent to the dead-letter topic."""

    def on_circuit_change(self, settings: ModelSettings, state: str) -> None:
        """The model's circuit breaker is now ``closed``, ``open`` or ``half_open``."""

    def on_rate_limit_change(self, settings: ModelSettings, requests_per_second: float) -> None:
        """The model's adaptive rate limit was cut (after a 429) or recovered."""

    def on_drift(self, settings: ModelSettings, feature: str, psi: float, alert: bool) -> None:
        """A drift check of ``feature`` (``output`` for the model's output) found ``psi``."""


class HooksDelegate(InferenceHooks):
    """Fans every hook out to the observers in :attr:`observers`.

    Example:
        >>> hooks = HooksDelegate()
        >>> hooks.add(InferenceHooks())
        >>> len(hooks.observers)
        1
    """

    def __init__(self) -> None:
        self.observers: list[InferenceHooks] = []

    def add(self, observer: InferenceHooks) -> None:
        """Start calling ``observer``'s hooks."""
        self.observers.append(observer)

    def remove(self, observer: InferenceHooks) -> None:
        """Stop calling ``observer``'s hooks."""
        self.observers.remove(observer)

    @override
    def on_request_start(self, settings: ModelSettings, batch_size: int) -> None:
        self._fan_out("on_request_start", settings, batch_size)

    @override
    def on_request_end(
        self,
        settings: ModelSettings,
        batch_size: int,
        duration_s: float,
        error: BaseException | None,
        usage: Usage | None,
    ) -> None:
        self._fan_out("on_request_end", settings, batch_size, duration_s, error, usage)

    @override
    def on_retry(self, settings: ModelSettings, error: BaseException, delay_s: float) -> None:
        self._fan_out("on_retry", settings, error, delay_s)

    @override
    def on_fallback(self, settings: ModelSettings, error: BaseException) -> None:
        self._fan_out("on_fallback", settings, error)

    @override
    def on_cache(self, settings: ModelSettings, hit: bool) -> None:
        self._fan_out("on_cache", settings, hit)

    @override
    def on_event_done(
        self, settings: ModelSettings, outcome: EventOutcome, latency_s: float
    ) -> None:
        self._fan_out("on_event_done", settings, outcome, latency_s)

    @override
    def on_dead_letter(self, settings: ModelSettings, error: BaseException) -> None:
        self._fan_out("on_dead_letter", settings, error)

    @override
    def on_circuit_change(self, settings: ModelSettings, state: str) -> None:
        self._fan_out("on_circuit_change", settings, state)

    @override
    def on_rate_limit_change(self, settings: ModelSettings, requests_per_second: float) -> None:
        self._fan_out("on_rate_limit_change", settings, requests_per_second)

    @override
    def on_drift(self, settings: ModelSettings, feature: str, psi: float, alert: bool) -> None:
        self._fan_out("on_drift", settings, feature, psi, alert)

    def _fan_out(self, hook: str, *args: Any) -> None:
        for observer in self.observers:
            try:
                getattr(observer, hook)(*args)
            except Exception:
                logger.exception("inference hook %s of %r raised; ignored", hook, observer)
