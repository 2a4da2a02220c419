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

    Example:
        >>> shadow = ShadowTraffic(max_in_flight=32)                 # doctest: +SKIP
        >>> shadow.copy(v2_runner, "v1", value, primary_future, "classification")

    Args:
        max_in_flight: copies awaiting an answer at once, per worker; beyond
            it, copies are dropped (counted in :attr:`dropped`).
    """

    def __init__(self, max_in_flight: int = 32) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
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
    ) -> bool:
        """Send ``value`` to ``runner`` (the shadow) unless the cap is reached.

        Returns:
            Whether the copy was sent (False: dropped at the cap).
        """
        model = runner.name
        shadow_version = runner.settings.version or "-"
        pair = (model, shadow_version)
        if self.in_flight >= self.max_in_flight:
            self.dropped[pair] = self.dropped.get(pair, 0) + 1
            return False
        try:
            future = runner.submit(value)
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
