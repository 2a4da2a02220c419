"""How an error answer becomes one of our exceptions: the one place statuses are read.

:func:`status_error` classifies by HTTP status; each cloud says "slow down"
or "not ready" in its own words, so a provider may pass its own
:data:`ErrorClassifier` to its :class:`~faust_inference.providers.Endpoint`
(:func:`aws_error`, :func:`azure_error`, :func:`google_error`,
:func:`model_route_error`), each built on :func:`status_error` and
:func:`reclassify`. Every message is scrubbed before it is cut
(:mod:`.redaction`).

Example:
    >>> e = status_error(503, {"Retry-After": "2"}, b"busy", "http://h:1/p")
    >>> type(e).__name__, e.retryable, e.retry_after
    ('ServerError', True, 2.0)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from faust_inference.exceptions import (
    ClientError,
    ModelUnavailable,
    RateLimited,
    RemoteError,
    ServerError,
)
from faust_inference.providers.redaction import excerpt, redact_url

__all__ = [
    "ErrorClassifier",
    "aws_error",
    "azure_error",
    "error_json",
    "google_error",
    "header",
    "kind_of",
    "model_route_error",
    "parse_retry_after",
    "reclassify",
    "status_error",
]

ErrorClassifier = Callable[[int, Mapping[str, str], bytes, str, tuple[str, ...]], RemoteError]
"""``(status, headers, body, url, secrets) -> error`` for a non-2xx answer."""


def status_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    url: str,
    secrets: Iterable[str] = (),
) -> RemoteError:
    """The exception for a non-2xx answer, by its status.

    429 is :class:`RateLimited`, 5xx and 408 :class:`ServerError` (both
    retryable), any other status :class:`ClientError`. The message holds the
    URL without credentials and the start of the body, scrubbed first.
    """
    message = f"{redact_url(url)} answered {status}: {excerpt(body, secrets)}"
    retry_after = parse_retry_after(header(headers, "Retry-After"))
    if status == 429:
        return RateLimited(message, status=status, retry_after=retry_after)
    if status >= 500 or status == 408:
        return ServerError(message, status=status, retry_after=retry_after)
    return ClientError(message, status=status, retry_after=retry_after)


def model_route_error(
    status: int, headers: Mapping[str, str], body: bytes, url: str, secrets: tuple[str, ...]
) -> RemoteError:
    """:func:`status_error`, except that 404 on the model's own URL is an outage.

    For protocols whose URL is fixed by the protocol and checked at start-up
    (Open Inference Protocol, OpenAI-compatible), a 404 during the run means
    the model was unloaded or is being redeployed, not that the event is
    bad: :class:`ModelUnavailable` is retryable, and the circuit breaker
    counts it as a failure of the endpoint.

    Example:
        >>> e = model_route_error(404, {}, b'{"error": "Model fraud not found"}',
        ...                       "http://h:8080/v2/models/fraud/infer", ())
        >>> type(e).__name__, e.retryable, e.status
        ('ModelUnavailable', True, 404)
    """
    default = status_error(status, headers, body, url, secrets)
    if status == 404:
        return ModelUnavailable(
            f"{default} (the model is not served there now: unloaded or being redeployed)",
            status=status,
            retry_after=default.retry_after,
        )
    return default


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date).

    Example:
        >>> parse_retry_after("1.5")
        1.5
        >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
        10.0
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def reclassify(
    default: RemoteError,
    cls: type[RemoteError] | None,
    code: str | None,
    retry_after: float | None = None,
) -> RemoteError:
    """``default`` (from :func:`status_error`) as ``cls``, its message prefixed by the cloud's code.

    Keeps the status and ``Retry-After`` of the answer; ``retry_after``
    fills in a delay the cloud gave in its body instead of a header.
    """
    message = f"{code}: {default}" if code else str(default)
    delay = default.retry_after if default.retry_after is not None else retry_after
    return (cls or type(default))(message, status=default.status, retry_after=delay)


def kind_of(
    code: object,
    *,
    throttling: frozenset[str],
    transient: frozenset[str],
    final: frozenset[str],
) -> type[RemoteError] | None:
    """The exception class a cloud's error code calls for, or None to go by the status.

    Example:
        >>> kind_of("SlowDown", throttling=frozenset({"SlowDown"}), transient=frozenset(),
        ...         final=frozenset()).__name__
        'RateLimited'
    """
    if not isinstance(code, str):
        return None
    if code in throttling:
        return RateLimited
    if code in transient:
        return ServerError
    if code in final:
        return ClientError
    return None


def error_json(body: bytes) -> dict[str, Any]:
    """The error body as a dict, or an empty one when it is not a JSON object."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively (plain dicts in tests, multidicts on the wire)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


# -- AWS ------------------------------------------------------------------------------

# Error codes, from botocore's service models (``botocore/data/<service>/*/service-2.json``)
# and its standard retry mode (``botocore/retries/standard.py``).
_AWS_THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
    }
)
# Retryable but not a rate signal: botocore models ModelNotReadyException as
# ``retryable: {throttling: false}`` (Bedrock) and documents it as "wait and try
# again" (SageMaker: a serverless variant or multi-model endpoint still loading).
_AWS_TRANSIENT = frozenset(
    {
        "ModelNotReadyException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerException",
        "InternalServerError",
        "InternalDependencyException",
        "ModelTimeoutException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_AWS_FINAL = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredTokenException",
        "ValidationException",
        "ValidationError",
        "ResourceNotFoundException",
        "ServiceQuotaExceededException",
        "ModelErrorException",
    }
)


def aws_error(
    status: int, headers: Mapping[str, str], body: bytes, url: str, secrets: tuple[str, ...]
) -> RemoteError:
    """Our exception for an AWS error answer, by its error code first, then its status.

    The code comes from the ``x-amzn-ErrorType`` header (``Code:namespace``)
    or the body's ``__type``/``code``, as botocore's rest-json parser reads
    it. SageMaker's ``ModelError`` (424) wraps the container's own answer:
    it is classified by ``OriginalStatusCode``, so a container that answers
    503 is retried and one that answers 400 is not.

    Example:
        >>> e = aws_error(400, {"x-amzn-ErrorType": "ThrottlingException:http://x/"},
        ...               b'{"message": "Rate exceeded"}', "https://h/p", ())
        >>> type(e).__name__, e.retryable, e.status
        ('RateLimited', True, 400)
    """
    default = status_error(status, headers, body, url, secrets)
    data = error_json(body)
    raw = header(headers, "x-amzn-ErrorType") or data.get("__type") or data.get("code")
    code = raw.split(":", 1)[0].rsplit("#", 1)[-1] if isinstance(raw, str) and raw else None
    cls = kind_of(code, throttling=_AWS_THROTTLING, transient=_AWS_TRANSIENT, final=_AWS_FINAL)
    if code == "ModelError":
        original = data.get("OriginalStatusCode")
        if isinstance(original, int):
            cls = type(status_error(original, {}, b"", url))
    return reclassify(default, cls, code)


# -- Azure ----------------------------------------------------------------------------


def azure_error(
    status: int, headers: Mapping[str, str], body: bytes, url: str, secrets: tuple[str, ...]
) -> RemoteError:
    """Our exception for an Azure error answer.

    - ``retry-after-ms`` / ``x-ms-retry-after-ms`` (Azure OpenAI) give the
      wait in milliseconds when ``Retry-After`` is absent.
    - Azure ML answers 424 when the model container failed, with the
      container's status in ``ms-azureml-model-error-statuscode``: that status
      decides the class (a container's 503 is retried, its 400 is not).
    - The error ``code`` of an ``{"error": {"code", "message"}}`` body
      (``DeploymentNotFound``, ``content_filter`` ...) prefixes the message.

    Example:
        >>> e = azure_error(429, {"retry-after-ms": "1500"}, b'{"error": {"code": "429"}}',
        ...                 "https://x.openai.azure.com/openai/deployments/d/embeddings", ())
        >>> type(e).__name__, e.retry_after
        ('RateLimited', 1.5)
    """
    default = status_error(status, headers, body, url, secrets)
    cls: type[RemoteError] | None = None
    original = header(headers, "ms-azureml-model-error-statuscode")
    if status == 424 and original and original.isdigit():
        cls = type(status_error(int(original), {}, b"", url))
    delay = None
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = header(headers, name)
        if value:
            try:
                delay = max(0.0, float(value) / 1000)
            except ValueError:
                continue
            break
    error = error_json(body).get("error")
    code = error.get("code") if isinstance(error, dict) else None
    label = str(code) if code and not str(code).isdigit() else None
    reason = header(headers, "ms-azureml-model-error-reason")
    if reason and label is None:
        label = f"model error {original or ''} {reason}".strip()
    return reclassify(default, cls, label, delay)


# -- Google ---------------------------------------------------------------------------

_GOOGLE_RATE = frozenset({"RESOURCE_EXHAUSTED"})
_GOOGLE_TRANSIENT = frozenset({"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "ABORTED"})
_GOOGLE_FINAL = frozenset(
    {"INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED"}
)


def google_error(
    status: int, headers: Mapping[str, str], body: bytes, url: str, secrets: tuple[str, ...]
) -> RemoteError:
    """Our exception for a Google API error answer (``google.rpc.Status``).

    Maps the ``status`` name and reads ``RetryInfo.retryDelay``.

    Example:
        >>> e = google_error(429, {}, b'{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",'
        ...                  b' "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",'
        ...                  b' "retryDelay": "7s"}]}}', "https://x/v1/m:predict", ())
        >>> type(e).__name__, e.retry_after
        ('RateLimited', 7.0)
    """
    default = status_error(status, headers, body, url, secrets)
    data: Any = error_json(body)
    if not data:
        # The Gemini API sometimes wraps the error in a one-element list.
        try:
            wrapped = orjson.loads(body)
        except orjson.JSONDecodeError:
            wrapped = None
        if isinstance(wrapped, list) and wrapped and isinstance(wrapped[0], dict):
            data = wrapped[0]
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return default
    code = error.get("status")
    cls = kind_of(code, throttling=_GOOGLE_RATE, transient=_GOOGLE_TRANSIENT, final=_GOOGLE_FINAL)
    return reclassify(default, cls, code if isinstance(code, str) else None, _retry_delay(error))


def _retry_delay(error: Mapping[str, Any]) -> float | None:
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return max(0.0, float(delay[:-1]))
                except ValueError:
                    return None
    return None
