"""Configuration and scripted faults of the fake endpoint.

Both types are frozen so a test can hold on to the config it installed and
compare against it later; behaviour changes by *replacing* the config on the
running endpoint (``ep.config = replace(ep.config, latency=0.5)`` or
``ep.configure(latency=0.5)``), which takes effect from the next request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeAlias

FaultKind = Literal["status", "malformed", "reset", "stall"]
MAX_STALL_SECONDS = 600.0
"""Hard ceiling for ``stall_max`` so a forgotten stall can never hang a run forever."""


def retry_after_value(seconds: float) -> str:
    """Format a delay as an HTTP ``Retry-After`` delta-seconds value.

    RFC 9110 only allows whole seconds, and clients parse it with ``int()``,
    so the delay is rounded up (never 0, which would invite a hot retry loop).
    """
    return str(max(1, math.ceil(seconds)))


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, served to exactly one request.

    Scripted faults let a test dictate the precise sequence a client sees
    (e.g. 429, then 503, then success) instead of hoping that a random error
    rate produces it.

    Attributes:
        kind: ``"status"`` answers ``status`` with an error body;
            ``"malformed"`` answers 200 with a body that is not JSON;
            ``"reset"`` closes the connection without any response;
            ``"stall"`` never answers (until ``stall_max`` or the client gives up).
        status: HTTP status used when ``kind == "status"``.
        headers: Extra response headers as ``(name, value)`` pairs; a tuple keeps
            the dataclass hashable.
        message: Error message placed in the response body.
    """

    kind: FaultKind = "status"
    status: int = 500
    headers: tuple[tuple[str, str], ...] = ()
    message: str = "scripted failure"

    @classmethod
    def http(
        cls, status: int, *, retry_after: float | None = None, message: str | None = None
    ) -> Fault:
        """Build an error-status fault, optionally with a ``Retry-After`` header.

        Args:
            status: HTTP status code to answer with (e.g. 429, 500, 503).
            retry_after: Seconds for the ``Retry-After`` header; omitted if None.
            message: Error message for the body; a generic one if None.

        Returns:
            The fault.
        """
        headers = () if retry_after is None else (("Retry-After", retry_after_value(retry_after)),)
        return cls("status", status, headers, message or f"scripted HTTP {status}")

    @classmethod
    def coerce(cls, item: Fault | int | str, retry_after: float) -> Fault:
        """Turn the shorthand accepted by `FakeEndpoint.script` into a `Fault`.

        Args:
            item: A `Fault`; an ``int`` HTTP status (429 gets ``Retry-After``
                automatically because every real rate limiter sends one); or one
                of ``"malformed"``, ``"reset"``, ``"stall"``.
            retry_after: Seconds used for the automatic ``Retry-After`` of 429.

        Returns:
            The fault.

        Raises:
            ValueError: If the shorthand is not recognised.
        """
        if isinstance(item, Fault):
            return item
        if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            return cls.http(item, retry_after=retry_after if item == 429 else None)
        if item in ("malformed", "reset", "stall"):
            return cls(item)  # type: ignore[arg-type]  # narrowed by the membership test
        raise ValueError(f"unknown scripted response {item!r}")


ScriptItem: TypeAlias = Fault | int | str
"""What `FakeEndpoint.script` accepts: a `Fault`, an HTTP status or a kind name."""


@dataclass(frozen=True)
class EndpointConfig:
    """Behaviour of a `FakeEndpoint`; replace it at runtime to flip behaviour.

    Order per request: a pending scripted fault is taken first (a stall starts
    at once; other scripted faults are served after the latency, like a server
    that fails after working). Without one, the rate limiter may answer 429
    at once (real limiters reject before doing work); otherwise the latency is
    slept, ``error_rate`` may turn the answer into a 500, and ``max_batch`` and
    protocol validation may answer 400.

    Attributes:
        latency: Seconds slept before every answer (not before rate-limit 429s).
        slow_rate: Probability in [0, 1] that an answer takes ``slow_latency``
            instead (seeded like ``error_rate``): one slow replica of a pool.
        slow_latency: Seconds such a slow answer takes.
        jitter: Up to this many extra seconds, drawn per request from a seeded RNG.
        error_rate: Probability in [0, 1] that a request is answered 500; drawn
            from an RNG seeded with ``seed`` so failures repeat run to run.
        seed: Seed of the error and jitter RNGs (re-seeded when it changes).
        rate_limit_rps: Token-bucket rate above which requests get 429; None = off.
        rate_limit_burst: Bucket capacity; None means one second's worth of tokens.
        retry_after: Seconds advertised by the automatic ``Retry-After`` of scripted 429s.
        max_batch: Batches with more rows than this get 400; None = unlimited.
        dim: Default embedding dimension (a request's ``dimensions`` overrides it).
        stall_max: Upper bound in seconds for a stall; the connection is then reset.
        model: Model id reported by ``/v1/models`` and default OIP metadata.
        model_version: Version reported by OIP routes without a version in the path.
        record_limit: How many recent requests are kept for format assertions.
    """

    latency: float = 0.0
    slow_rate: float = 0.0
    slow_latency: float = 0.0
    jitter: float = 0.0
    error_rate: float = 0.0
    seed: int = 0
    rate_limit_rps: float | None = None
    rate_limit_burst: float | None = None
    retry_after: float = 1.0
    max_batch: int | None = None
    dim: int = 8
    stall_max: float = 60.0
    model: str = "fake-model"
    model_version: str = "1"
    record_limit: int = 1000

    def __post_init__(self) -> None:
        """Reject nonsense early, where the test that set it is still on the stack."""
        checks = {
            "latency >= 0": self.latency >= 0,
            "jitter >= 0": self.jitter >= 0,
            "0 <= error_rate <= 1": 0.0 <= self.error_rate <= 1.0,
            "0 <= slow_rate <= 1": 0.0 <= self.slow_rate <= 1.0,
            "slow_latency >= 0": self.slow_latency >= 0,
            "rate_limit_rps > 0": self.rate_limit_rps is None or self.rate_limit_rps > 0,
            "rate_limit_burst >= 1": self.rate_limit_burst is None or self.rate_limit_burst >= 1,
            "retry_after >= 0": self.retry_after >= 0,
            "max_batch >= 1": self.max_batch is None or self.max_batch >= 1,
            "dim >= 1": self.dim >= 1,
            f"0 <= stall_max <= {MAX_STALL_SECONDS}": 0 <= self.stall_max <= MAX_STALL_SECONDS,
            "record_limit >= 0": self.record_limit >= 0,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid EndpointConfig: need {', '.join(failed)}")
