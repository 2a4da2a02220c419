"""Shadow traffic: a sampled copy of the events goes to another version, answers compared.

The shadow never changes what the agent receives and never delays it: a
copy is submitted to the shadow version's own runner (its own in-flight cap
and limits) and forgotten by the primary path; the comparison runs when both
answers are in. Copies beyond :attr:`ShadowTraffic.max_in_flight` are dropped
and counted, never queued; a shadow's failures are counted, never
dead-lettered.

Agreement is kept per (primary, shadow) pair, in a form that adds up across
workers (:class:`Agreement`):

* classification: agreement rate of the predicted class and the confusion
  counts (primary class -> shadow class);
* regression: mean absolute difference;
* embeddings: mean cosine similarity;
* text generation: exact-match rate.

Example:
    >>> a = Agreement(task="classification")
    >>> a.compare([0.9, 0.1], [0.6, 0.4]); a.compare([0.9, 0.1], [0.2, 0.8])
    >>> a.rate, a.confusion
    (0.5, {'0->0': 1, '0->1': 1})
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faust_inference.config import Task
from faust_inference.core.runner import InferenceRunner, Outcome

__all__ = ["Agreement", "ShadowTraffic", "predicted_class"]

logger = logging.getLogger(__name__)

_LAG_TICK = 0.05
"""Seconds between two measurements of the event loop's lag."""


def predicted_class(output: Any) -> str:
    """The class an output stands for: the arg-max of a probability row, else the label.

    Example:
        >>> predicted_class([0.2, 0.8]), predicted_class("spam"), predicted_class(1)
        ('1', 'spam', '1')
    """
    if (
        isinstance(output, list | tuple)
        and output
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in output)
    ):
        if len(output) == 1:  # one probability: the positive class
            return "1" if float(output[0]) >= 0.5 else "0"
        return str(max(range(len(output)), key=output.__getitem__))
    if isinstance(output, dict):
        for name in ("label", "class", "category"):
            if name in output:
                return str(output[name])
    if isinstance(output, float) and output.is_integer():
        return str(int(output))
    return str(output)


def _number(output: Any) -> float:
    if isinstance(output, list | tuple) and len(output) == 1:
        output = output[0]
    return float(output)


def _cosine(a: Any, b: Any) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


@dataclass(slots=True)
class Agreement:
    """How a shadow's answers compare with the primary's, over the same events.

    Attributes:
        task: decides the comparison.
        compared: pairs compared.
        agreed: pairs whose class (or text) matched; classification and text.
        total: sum of |difference| (regression) or of cosine similarity (embeddings).
        confusion: ``"primary->shadow"`` class pair -> count (classification).
    """

    task: Task
    compared: int = 0
    agreed: int = 0
    total: float = 0.0
    confusion: dict[str, int] = field(default_factory=dict)

    def compare(self, primary: Any, shadow: Any) -> None:
        """Count one pair of answers to the same input."""
        self.compared += 1
        if self.task == "classification":
            a, b = predicted_class(primary), predicted_class(shadow)
            self.agreed += a == b
            cell = f"{a}->{b}"
            self.confusion[cell] = self.confusion.get(cell, 0) + 1
        elif self.task == "regression":
            self.total += abs(_number(primary) - _number(shadow))
        elif self.task == "embedding":
            self.total += _cosine(primary, shadow)
        else:
            self.agreed += primary == shadow

    @property
    def rate(self) -> float | None:
        """The headline figure: agreement rate, mean |difference| or mean cosine.

        None before any comparison.
        """
        if not self.compared:
            return None
        if self.task in ("regression", "embedding"):
            return self.total / self.compared
        return self.agreed / self.compared

    @property
    def measure(self) -> str:
        """What :attr:`rate` is, in words."""
        return {
            "classification": "agreement",
            "regression": "mean_abs_diff",
            "embedding": "mean_cosine",
        }.get(self.task, "exact_match")

    def merge(self, other: Agreement) -> Agreement:
        """Both comparisons together (two workers, two periods)."""
        confusion = dict(self.confusion)
        for cell, n in other.confusion.items():
            confusion[cell] = confusion.get(cell, 0) + n
        return Agreement(
            self.task,
            self.compared + other.compared,
            self.agreed + other.agreed,
            self.total + other.total,
            confusion,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the headline figure."""
        return {
            "task": self.task,
            "compared": self.compared,
            "agreed": self.agreed,
            "total": self.total,
            "confusion": dict(self.confusion),
            "measure": self.measure,
            "value": self.rate,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Agreement:
        """The inverse of :meth:`as_dict`."""
        return cls(
            data["task"],
            int(data["compared"]),
            int(data["agreed"]),
            float(data["total"]),
            {str(k): int(v) for k, v in data.get("confusion", {}).items()},
        )


class ShadowTraffic:
    """Sends copies of primary inputs to a shadow runner and compares the answers.

    A copy only uses capacity the primary leaves idle. It is dropped (and
    counted in :attr:`dropped`, never queued) when :attr:`max_in_flight`
    copies already await an answer, when the primary's own runner has every
    slot busy, or while the worker's event loop runs late by more than
    ``max_lag_s`` (measured every 50 ms): on a busy worker, the shadow's
    requests, answers and failures would otherwise take CPU the primary's
    events are waiting for.

    Example:
        >>> shadow = ShadowTraffic(max_in_flight=32)                 # doctest: +SKIP
        >>> shadow.copy(v2_runner, "v1", value, primary_future, "classification")  # doctest: +SKIP

    Args:
        max_in_flight: copies awaiting an answer at once, per worker.
        max_lag_s: event-loop lag above which copies are dropped.
    """

    def __init__(self, max_in_flight: int = 32, max_lag_s: float = 0.02) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
        self.max_lag_s = max_lag_s
        self.lag = 0.0
        """Recent event-loop lag, in seconds (rises at once, decays slowly)."""
        self._monitor: asyncio.Task[None] | None = None
        self.in_flight = 0
        self.sent: dict[tuple[str, str], int] = {}
        self.dropped: dict[tuple[str, str], int] = {}
        self.failed: dict[tuple[str, str], int] = {}
        self.agreement: dict[tuple[str, str, str], Agreement] = {}
        """(model, primary version, shadow version) -> comparison since start."""
        self.on_compared: Callable[[str, str, str, Agreement], None] | None = None

    def copy(
        self,
        runner: InferenceRunner,
        primary_version: str,
        value: Any,
        primary: asyncio.Future[Outcome],
        task: Task,
        primary_runner: InferenceRunner | None = None,
    ) -> bool:
        """Send ``value`` to ``runner`` (the shadow) unless that would cost the primary.

        Returns:
            Whether the copy was sent (False: dropped).
        """
        model = runner.name
        shadow_version = runner.settings.version or "-"
        pair = (model, shadow_version)
        if self._monitor is None:
            self._monitor = asyncio.get_running_loop().create_task(
                self._watch_lag(), name="faust-inference:shadow-lag"
            )
        if (
            self.in_flight >= self.max_in_flight
            or self.lag > self.max_lag_s
            or (
                primary_runner is not None
                and primary_runner.in_flight >= primary_runner.settings.max_concurrency
            )
        ):
            self.dropped[pair] = self.dropped.get(pair, 0) + 1
            return False
        try:
            # Impatient: a shadow copy never waits through an outage.
            future = runner.submit(value, patient=False)
        except RuntimeError:  # closed: the worker is stopping
            return False
        self.in_flight += 1
        self.sent[pair] = self.sent.get(pair, 0) + 1

        def shadow_done(f: asyncio.Future[Outcome]) -> None:
            self.in_flight -= 1
            if f.cancelled():
                return
            if f.exception() is not None:
                self.failed[pair] = self.failed.get(pair, 0) + 1
                return
            answer = f.result().output
            if primary.done():
                self._compare(model, primary_version, shadow_version, primary, answer, task)
            else:
                primary.add_done_callback(
                    lambda p: self._compare(model, primary_version, shadow_version, p, answer, task)
                )

        future.add_done_callback(shadow_done)
        return True

    async def _watch_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(_LAG_TICK)
            late = max(0.0, loop.time() - before - _LAG_TICK)
            self.lag = late if late > self.lag else 0.8 * self.lag + 0.2 * late

    def close(self) -> None:
        """Stop watching the loop's lag (the worker is stopping)."""
        if self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None

    def _compare(
        self,
        model: str,
        primary_version: str,
        shadow_version: str,
        primary: asyncio.Future[Outcome],
        answer: Any,
        task: Task,
    ) -> None:
        if primary.cancelled() or primary.exception() is not None:
            return  # nothing to compare with
        key = (model, primary_version, shadow_version)
        agreement = self.agreement.get(key)
        if agreement is None:
            agreement = self.agreement[key] = Agreement(task)
        try:
            agreement.compare(primary.result().output, answer)
        except (TypeError, ValueError) as exc:  # answers of different shapes
            logger.debug("model %r: shadow answer not comparable: %s", model, exc)
            return
        if self.on_compared is not None:
            self.on_compared(model, primary_version, shadow_version, agreement)
