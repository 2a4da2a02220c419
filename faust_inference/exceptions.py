"""One exception tree for everything faust-inference raises.

Callers decide two things from an error: whether to retry and whether the
event is at fault. The tree is shaped so that both are a single ``isinstance``
or attribute check, and every HTTP client error is translated into it once,
at the transport boundary (:mod:`faust_inference.providers.transport`)::

    InferenceError
    ├── ConfigurationError            bad registration; raised at start-up
    ├── ModelNotFound                 no model registered under that name
    ├── InvalidInput                  this event cannot be sent (names the field)
    │   └── UndecodableEvent          the Kafka record cannot be deserialized
    ├── ProviderError(.retryable)     the call to the model server failed
    │   ├── TransportError            no answer: connect error, reset  (retryable)
    │   │   ├── InferenceTimeout      no answer in time                (retryable)
    │   │   └── EndpointNotReady      up, but not ready to serve yet   (retryable)
    │   ├── RemoteError(.status)      the server answered with an error status
    │   │   ├── RateLimited           429, with .retry_after           (retryable)
    │   │   ├── ServerError           5xx                              (retryable)
    │   │   │   └── ModelUnavailable  404 for the model during the run (retryable)
    │   │   └── ClientError           other 4xx: the request is wrong
    │   ├── ResponseDecodeError       2xx, but the body is not what the protocol says
    │   │   ├── ResponseTooLarge      the body passed max_response_bytes
    │   │   └── InvalidOutput         the answer fails the model's output_type (retryable)
    │   └── CircuitOpen               not sent: the endpoint's circuit breaker is open
    └── RetriesExhausted              the last retryable error, after every attempt

Messages never contain credentials: transports strip query strings and never
echo request headers.
"""

from __future__ import annotations

__all__ = [
    "CircuitOpen",
    "ClientError",
    "ConfigurationError",
    "EndpointNotReady",
    "InferenceError",
    "InferenceTimeout",
    "InvalidInput",
    "InvalidOutput",
    "ModelNotFound",
    "ModelUnavailable",
    "ProviderError",
    "RateLimited",
    "RemoteError",
    "ResponseDecodeError",
    "ResponseTooLarge",
    "RetriesExhausted",
    "ServerError",
    "TransportError",
    "UndecodableEvent",
]


class InferenceError(Exception):
    """Base of every error raised by faust-inference.

    Attributes:
        attempts: how many calls were made before this error was final; 0 when
            no call was made (bad input, bad configuration).
    """

    attempts: int = 0


class ConfigurationError(InferenceError, ValueError):
    """A model or provider was registered with settings that cannot work.

    Raised at registration, not at the first event, so a worker with a typo
    never starts consuming.
    """


class ModelNotFound(InferenceError, LookupError):
    """No model is registered under the requested name."""


class InvalidInput(InferenceError, ValueError):
    """An event cannot be turned into a request; retrying cannot help.

    Example:
        >>> raise InvalidInput("features", "expected a list of numbers, got 'abc'")
        Traceback (most recent call last):
        ...
        faust_inference.exceptions.InvalidInput: features: expected a list of numbers, got 'abc'
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class UndecodableEvent(InvalidInput):
    """A Kafka record whose key or value cannot be deserialized into the agent's types.

    It goes to the dead-letter topic with its raw bytes (base64), its topic,
    partition and offset, and this error; the stream goes on.

    Example:
        >>> str(UndecodableEvent("value", "orders", 3, 120, "Expecting value: line 1"))
        "value: the record at orders[3]@120 cannot be decoded (Expecting value: line 1); ..."
    """

    def __init__(self, part: str, topic: str, partition: int, offset: int, cause: str) -> None:
        super().__init__(
            part,
            f"the record at {topic}[{partition}]@{offset} cannot be decoded ({cause}); "
            "its raw bytes are in the dead letter: fix the producer or the topic's "
            f"{part}_type / {part}_serializer, then replay them",
        )
        self.topic = topic
        self.partition = partition
        self.offset = offset


class ProviderError(InferenceError):
    """A call to a model server failed.

    Attributes:
        retryable: whether the same request may succeed if sent again.
    """

    retryable: bool = False


class TransportError(ProviderError):
    """The request got no answer: refused, reset or dropped connection."""

    retryable = True


class InferenceTimeout(TransportError):
    """The server did not answer within the model's ``timeout``."""


class EndpointNotReady(TransportError):
    """The server answers, but is not ready to serve the model yet (starting, loading it).

    Raised by a provider's readiness check (``await provider.ready()``) for a
    5xx, a 429 or a model that is known but still loading: worth waiting for,
    unlike :class:`ModelNotFound`.
    """


class RemoteError(ProviderError):
    """The server answered with an error status.

    Attributes:
        status: the HTTP status code.
        retry_after: seconds the server asked us to wait (``Retry-After``), if it said.
    """

    default_status = 400

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = self.default_status if status is None else status
        self.retry_after = retry_after


class RateLimited(RemoteError):
    """The server asked us to slow down (HTTP 429)."""

    retryable = True
    default_status = 429


class ServerError(RemoteError):
    """The server failed (HTTP 5xx); the same request may succeed later."""

    retryable = True
    default_status = 500


class ModelUnavailable(ServerError):
    """The server answered 404 for a model that was there at start-up.

    During the run this means the model was unloaded or is being
    redeployed: an outage of the endpoint (retried, counted by the circuit
    breaker), not a fault of the event. A model missing at start-up is a
    :class:`ModelNotFound` from the readiness check instead.
    """

    default_status = 404


class ClientError(RemoteError):
    """The server rejected the request (HTTP 4xx other than 429).

    The request itself is wrong (bad shape, unknown model, auth), so sending it
    again would give the same answer.
    """


class ResponseDecodeError(ProviderError):
    """A success status with a body that does not follow the protocol."""


class ResponseTooLarge(ResponseDecodeError):
    """The answer's body grew past the model's ``max_response_bytes``; reading stopped.

    Not retried: the same request would get the same answer. Raise the
    setting, or ask for less (smaller batches, fewer outputs).
    """


class InvalidOutput(ResponseDecodeError):
    """The model answered, but not in the shape of the model's ``output_type``.

    Retryable: a language model asked again often answers correctly, so the
    model's ``retries=`` ask again; when they are exhausted the event is
    dead-lettered with the validation error (never with credentials).
    """

    retryable = True


class CircuitOpen(ProviderError):
    """The call was not sent: the endpoint failed repeatedly and its breaker is open.

    Raised while the circuit is open when the model has a fallback or a
    default output to answer instead (``on_open=None``, the default, or
    ``on_open="fallback"``); with ``on_open="wait"``, or nothing to answer
    from, callers wait for the circuit instead.
    """


class RetriesExhausted(InferenceError):
    """Every attempt failed with a retryable error.

    The last error is the ``__cause__`` and :attr:`last_error`.
    """

    def __init__(self, last_error: ProviderError, attempts: int) -> None:
        super().__init__(
            f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}: "
            f"{type(last_error).__name__}: {last_error}"
        )
        self.last_error = last_error
        self.attempts = attempts
