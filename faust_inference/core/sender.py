"""One request to the model server, with all its attempts.

Kept apart from the runner's batching: this is where an attempt waits for
the rate limit and the circuit breaker, times out, is retried with backoff,
and is reported to the hooks (metrics). The runner decides what to send;
the sender decides when and how often.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from faust_inference.config import ModelSettings
from faust_inference.core.breaker import CircuitBreaker, CircuitState, is_outage
from faust_inference.core.clock import Clock
from faust_inference.core.hooks import InferenceHooks
from faust_inference.core.limits import RateLimiter
from faust_inference.core.provider import Predictions, Provider
from faust_inference.core.retry import RetryPolicy
from faust_inference.exceptions import (
    CircuitOpen,
    InferenceError,
    InferenceTimeout,
    InvalidInput,
    ProviderError,
    RateLimited,
    ResponseDecodeError,
    RetriesExhausted,
    ServerError,
)

__all__ = ["Sender"]

logger = logging.getLogger("faust_inference.core.runner")


class Sender:
    """Sends one batch of inputs to one model, attempt after attempt.

    Example:
        >>> sender = Sender(provider, settings, clock=LoopClock(), policy=policy,
        ...                 hooks=InferenceHooks())  # doctest: +SKIP
        >>> predictions, attempts, latency = await sender.send([x])  # doctest: +SKIP

    Args:
        provider: how to call the model.
        settings: the model's registration (timeout, limits, breaker).
        clock: the time source; tests pass one that does not sleep.
        policy: when to retry and how long to wait.
        hooks: told about every attempt and retry.
        breaker: a circuit breaker shared with other models of the endpoint;
            by default one is built from ``settings.circuit_breaker``.
    """

    __slots__ = (
        "_breaker_waits",
        "_clock",
        "_in_outage",
        "_policy",
        "breaker",
        "hooks",
        "limiter",
        "provider",
        "settings",
    )

    def __init__(
        self,
        provider: Provider,
        settings: ModelSettings,
        *,
        clock: Clock,
        policy: RetryPolicy,
        hooks: InferenceHooks,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.hooks = hooks
        self._clock = clock
        self._policy = policy
        self._in_outage = False
        self.limiter: RateLimiter | None = None
        if settings.rate_limit is not None:
            self.limiter = RateLimiter(
                settings.rate_limit, clock, on_change=self._rate_limit_changed
            )
        self.breaker = breaker
        if breaker is not None:
            breaker.add_listener(self._circuit_changed)
        elif settings.circuit_breaker is not None:
            self.breaker = CircuitBreaker(
                settings.circuit_breaker, clock, on_change=self._circuit_changed
            )
        # While the circuit is open, callers wait unless a fallback can answer.
        tuned = settings.circuit_breaker or (self.breaker.settings if self.breaker else None)
        on_open = tuned.on_open if tuned is not None else None
        self._breaker_waits = (
            self.breaker is None
            or on_open == "wait"
            or not (settings.fallback or settings.has_default_output)
        )

    async def send(
        self,
        inputs: Sequence[Any],
        *,
        retry: bool = True,
        prior_attempts: int = 0,
        reserved: bool = False,
        patient: bool = True,
    ) -> tuple[Predictions, int, float]:
        """One request with retries; returns the predictions, attempts and latency.

        Attempts are counted from ``prior_attempts``: calls that already
        carried these inputs in a batch that was then split. ``reserved``
        says the dispatcher already waited for the rate limit's turn.

        A 429 under a rate limit, and an outage while the circuit breaker
        makes callers wait, are the server's state, not the inputs' fault:
        they are retried after the wait without using up the retries, for up
        to the model's ``outage_budget``. An outage is an open circuit, or
        an outage-like error (no answer, 5xx, garbage) while no call sent
        after this attempt has been answered: if one has, the server works
        and the failure is this input's. A plain 500 on a batch is ambiguous
        (some servers answer it to one bad row) and is split by the runner
        first.
        """
        clock, timeout, settings, hooks = (
            self._clock,
            self.settings.timeout,
            self.settings,
            self.hooks,
        )
        limiter, breaker = self.limiter, self.breaker
        budget = settings.outage_budget if self._breaker_waits and patient else 0.0
        size, name = len(inputs), settings.name
        attempt = prior_attempts
        counted = 0  # attempts that use up the retries
        while True:
            if limiter is not None:
                if reserved:
                    reserved = False
                else:
                    delay = limiter.reserve()
                    if delay > 0:
                        await clock.sleep(delay)
            if breaker is not None and not breaker.allow():
                until = None
                if budget is not None:
                    until = clock.monotonic() + max(0.0, budget - breaker.outage_seconds())
                if not self._breaker_waits or not await breaker.admit(until):
                    refused = CircuitOpen(self._refusal(breaker))
                    refused.attempts = attempt
                    raise refused
            # A half-open breaker counts its probes: give the place back if
            # this one ends without a verdict.
            probe = breaker is not None and breaker.state == "half_open"
            attempt += 1
            counted += 1
            hooks.on_request_start(settings, size)
            started = clock.monotonic()
            try:
                try:
                    async with asyncio.timeout(timeout):
                        predictions = await self.provider.infer(inputs)
                except TimeoutError:
                    raise InferenceTimeout(
                        f"model {name!r} did not answer within {timeout:g}s"
                    ) from None
                if len(predictions.outputs) != len(inputs):
                    raise ResponseDecodeError(
                        f"model {name!r} returned {len(predictions.outputs)} outputs "
                        f"for {len(inputs)} inputs"
                    )
            except InferenceError as exc:
                error = exc
            except Exception as exc:  # a provider bug must not kill the dispatcher
                error = ProviderError(f"provider of {name!r} failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
            except BaseException as exc:  # cancelled: stopping
                hooks.on_request_end(settings, size, clock.monotonic() - started, exc, None)
                if probe and breaker is not None:
                    breaker.release()
                raise
            else:
                latency = clock.monotonic() - started
                usage = predictions.usage
                hooks.on_request_end(settings, size, latency, None, usage)
                if breaker is not None:
                    breaker.record(failed=False, sent_at=started)
                if limiter is not None and usage is not None:
                    limiter.charge(usage)
                return predictions, attempt, latency
            hooks.on_request_end(settings, size, clock.monotonic() - started, error, None)
            # An input the provider refused to encode was never sent.
            never_sent = isinstance(error, InvalidInput)
            error.attempts = attempt - 1 if never_sent else attempt
            # A plain 500 on a batch is ambiguous (one bad row, or a server that
            # refuses batches): the runner splits the batch, and what fails
            # alone tells the breaker whether the server is down.
            ambiguous = size > 1 and _plain_500(error)
            if breaker is not None:
                if not (never_sent or ambiguous):
                    breaker.record(failed=is_outage(error))
                elif probe:
                    breaker.release()
            if limiter is not None and isinstance(error, RateLimited):
                counted -= 1  # backpressure: wait for the limiter, never give up
                hooks.on_retry(settings, error, limiter.throttled(started, error.retry_after))
                continue
            # An outage the stream waits through (see the docstring).
            down = (
                error
                if breaker is not None
                and budget != 0
                and isinstance(error, ProviderError)
                and is_outage(error)
                and not ambiguous
                else None
            )
            held = (
                down is not None
                and breaker is not None
                and (budget is None or breaker.outage_seconds() < budget)
            )
            if down is not None and breaker is not None and breaker.state != "closed":
                if held:
                    counted -= 1  # the next attempt waits for the breaker's probe
                    hooks.on_retry(settings, error, 0.0)
                    continue
                raise RetriesExhausted(down, attempt) from error
            if not isinstance(error, ProviderError) or not (
                retry and self._policy.should_retry(error, counted)
            ):
                if (
                    held
                    and down is not None
                    and breaker is not None
                    and breaker.newest_answered <= started
                    and not (size > 1 and _plain_500(down))
                ):
                    # No call sent after this one has been answered: an outage
                    # the breaker has not opened for yet. Keep trying.
                    delay = self._policy.delay(down, max(counted, 1))
                    hooks.on_retry(settings, error, delay)
                    await clock.sleep(delay)
                    continue
                if (
                    isinstance(error, ProviderError)
                    and attempt > 1
                    and (error.retryable or down is not None)
                ):
                    raise RetriesExhausted(error, attempt) from error
                raise error
            delay = self._policy.delay(error, counted)
            logger.debug(
                "model %r: attempt %d failed (%s: %s); retrying in %.3fs",
                name,
                attempt,
                type(error).__name__,
                error,
                delay,
            )
            hooks.on_retry(settings, error, delay)
            await clock.sleep(delay)

    def _refusal(self, breaker: CircuitBreaker) -> str:
        name, budget = self.settings.name, self.settings.outage_budget
        if not self._breaker_waits:
            return f"model {name!r}: circuit open after repeated failures; not sent"
        return (
            f"model {name!r}: the endpoint has been failing for {breaker.outage_seconds():.0f}s, "
            f"longer than outage_budget={budget:g}s; not sent (raise outage_budget to hold "
            "events longer, or set it to None to wait as long as it takes)"
        )

    def _rate_limit_changed(self, requests_per_second: float) -> None:
        self.hooks.on_rate_limit_change(self.settings, requests_per_second)

    def _circuit_changed(self, state: CircuitState) -> None:
        # One line when an outage begins and one when it ends: a breaker that
        # reopens after each failed probe is the same outage.
        name, breaker = self.settings.name, self.breaker
        if state == "open" and not self._in_outage:
            self._in_outage = True
            budget = self.settings.outage_budget
            logger.warning(
                "model %r: outage began (repeated failures); %s, probing every %gs",
                name,
                (
                    "stream events wait"
                    + (f" for up to outage_budget={budget:g}s" if budget is not None else "")
                )
                if self._breaker_waits
                else "calls go to the fallback",
                breaker.settings.reset_timeout if breaker else 0,
            )
        elif state == "closed" and self._in_outage:
            self._in_outage = False
            logger.warning(
                "model %r: outage ended, the endpoint answers again (failing for %.1fs before)",
                name,
                self._clock.monotonic() - breaker.outage_began if breaker else 0.0,
            )
        self.hooks.on_circuit_change(self.settings, state)


def _plain_500(error: BaseException) -> bool:
    return isinstance(error, ServerError) and error.status == 500
