"""What an agent receives for each event, and what lands in the dead-letter topic.

Every result carries the event that caused it and the model that produced it,
so downstream code never has to correlate by hand (the same choice as Apache
Beam's ``PredictionResult``). These are plain slotted dataclasses, not
pydantic models: one is made per event on the hot path.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from faust_inference.exceptions import InferenceError, RetriesExhausted

__all__ = ["DeadLetter", "InferenceResult", "Usage"]

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a call consumed, where the provider reports them."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class InferenceResult(Generic[E]):
    """The model's answer for one event.

    Example:
        >>> r = InferenceResult(event={"id": "t1"}, output=[0.9, 0.1], model="fraud",
        ...                     version="v1", latency_s=0.02)
        >>> r.output[1], r.fallback
        (0.1, False)

    Attributes:
        event: the event value as the stream delivered it.
        output: the model's output for this event (one row of the batch).
        model: name of the model that produced :attr:`output` (the fallback's
            name when :attr:`fallback` is true).
        version: that model's version, if registered with one: the version
            that answered when the model has several.
        variant: which arm of the routing the event took (``default``,
            ``control``/``treatment`` in a split, ``stable``/``canary`` in a
            rollout, ``pinned``); None when the model has a single version.
        latency_s: time from the request being sent to its answer, in seconds.
        attempts: calls made, 1 when the first one succeeded.
        fallback: whether the output came from a fallback model or default output.
        cached: whether the output came from a result cache.
        key: the event's key.
        partition: the source partition, when the event came from Kafka.
        offset: the source offset, when the event came from Kafka.
        usage: tokens consumed by this event's share of the request, if reported.
        error: why there is no output; only ever set when ``infer()`` has no
            dead-letter topic, so that failures reach the agent instead.
    """

    event: E
    output: Any
    model: str
    version: str | None = None
    latency_s: float = 0.0
    attempts: int = 1
    fallback: bool = False
    cached: bool = False
    key: Any = None
    partition: int | None = None
    offset: int | None = None
    usage: Usage | None = None
    error: BaseException | None = None
    variant: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the model produced an output (possibly a fallback one)."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why an event produced no result; written to the dead-letter topic.

    Attributes:
        event: the original event value (as JSON-compatible data).
        key: the original event key.
        topic: the source topic, partition and offset, for replaying by hand.
        error_class: class of the final error (``RetriesExhausted``, ``ClientError`` ...).
        cause_class: class of the last underlying error, when retries were exhausted.
        error: the error message (never contains credentials).
        attempts: calls made before giving up (0: the event could not be sent).
        model: the model that was asked.
        version: its version.
        failed_at: Unix time of the failure.
        raw_key: the record's key bytes, base64, when the record could not be
            decoded (then ``event`` is None).
        raw_value: the record's value bytes, base64, likewise.
        truncated: the letter was too big for the producer: ``event`` (or
            ``raw_value``) was replaced by its size and a BLAKE2b digest.
    """

    event: Any
    error_class: str
    error: str
    attempts: int
    model: str
    version: str | None = None
    cause_class: str | None = None
    key: Any = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    failed_at: float = field(default_factory=time.time)
    raw_key: str | None = None
    raw_value: str | None = None
    truncated: bool = False

    @classmethod
    def from_error(
        cls,
        exc: BaseException,
        *,
        event: Any,
        model: str,
        version: str | None,
        **where: Any,
    ) -> DeadLetter:
        """Build a dead letter from the exception that ended an event."""
        cause = exc.last_error if isinstance(exc, RetriesExhausted) else None
        attempts = exc.attempts if isinstance(exc, InferenceError) else 0
        return cls(
            event=event,
            error_class=type(exc).__name__,
            cause_class=type(cause).__name__ if cause is not None else None,
            error=str(exc),
            attempts=attempts,
            model=model,
            version=version,
            **where,
        )

    @staticmethod
    def encode_raw(data: bytes | None) -> str | None:
        """Base64 of a record's raw key or value, as dead letters carry them."""
        return None if data is None else base64.b64encode(data).decode("ascii")

    def shrunk(self, size: int) -> DeadLetter:
        """This letter with the event replaced by its size and digest (see ``truncated``).

        Used when the letter is too big for the producer: what happened, to
        which record, is kept; the bulk is not. ``size`` is the encoded
        letter's size in bytes.
        """
        bulk = self.raw_value if self.raw_value is not None else repr(self.as_dict()["event"])
        digest = hashlib.blake2b(bulk.encode("utf-8", "replace"), digest_size=16).hexdigest()
        summary = {"dead_letter_bytes": size, "blake2b_128": digest}
        return replace(
            self,
            event=summary if self.raw_value is None else None,
            raw_value=None,
            raw_key=self.raw_key if self.raw_key is None or len(self.raw_key) < 4096 else None,
            error=self.error[:4000],
            key=self.key if not isinstance(self.key, bytes | str) or len(self.key) < 4096 else None,
            truncated=True,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready mapping, with the event converted if it is a Faust record."""
        event = self.event
        to_repr = getattr(event, "asdict", None) or getattr(event, "to_representation", None)
        if callable(to_repr):
            event = to_repr()
        key = self.key
        if isinstance(key, bytes):
            # A key that is not UTF-8 must not make the letter itself fail.
            key = key.decode("utf-8", "backslashreplace")
        return {
            "event": event,
            "key": key,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "error_class": self.error_class,
            "cause_class": self.cause_class,
            "error": self.error,
            "attempts": self.attempts,
            "model": self.model,
            "version": self.version,
            "failed_at": self.failed_at,
            "raw_key": self.raw_key,
            "raw_value": self.raw_value,
            "truncated": self.truncated,
        }
