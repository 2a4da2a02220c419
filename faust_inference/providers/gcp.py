"""Google Cloud for the vertex and gemini providers: google-auth tokens, Google errors.

Vertex AI takes an OAuth access token from google-auth credentials: the
connection's ``credentials`` object, its ``google_credentials_file`` (a
service-account key), or Application Default Credentials. Refreshing a token
is a blocking HTTP call, so it runs in a thread and only when the token is
within five minutes of expiry (:class:`.TokenCache`).

Google APIs answer errors as ``{"error": {"code": 429, "message": ...,
"status": "RESOURCE_EXHAUSTED", "details": [...]}}`` (google.rpc.Status);
:func:`google_error` maps the ``status`` and reads ``RetryInfo.retryDelay``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from faust_inference.config import ModelSettings
from faust_inference.exceptions import (
    ConfigurationError,
    RemoteError,
)
from faust_inference.providers.cloud import TokenCache, error_json, kind_of, reclassify, require
from faust_inference.providers.transport import status_error

__all__ = ["CLOUD_PLATFORM", "google_credentials", "google_error", "google_token_cache"]

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"

_RATE = frozenset({"RESOURCE_EXHAUSTED"})
_TRANSIENT = frozenset({"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "ABORTED"})
_CLIENT = frozenset(
    {"INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED"}
)


def google_error(
    status: int, headers: Mapping[str, str], body: bytes, url: str, secrets: tuple[str, ...]
) -> RemoteError:
    """Our exception for a Google API error answer.

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
        import orjson

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
    cls = kind_of(code, throttling=_RATE, transient=_TRANSIENT, final=_CLIENT)
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


def google_credentials(settings: ModelSettings, what: str) -> tuple[Any, str | None]:
    """The google-auth credentials of a model and the project they name, if any.

    Raises:
        ConfigurationError: google-auth missing, or no credentials found.
    """
    conn = settings.connection
    if conn is not None and conn.credentials is not None:
        return conn.credentials, getattr(conn.credentials, "project_id", None)
    auth = require("google.auth", "gcp", what)
    try:
        if conn is not None and conn.google_credentials_file:
            service_account = require("google.oauth2.service_account", "gcp", what)
            creds = service_account.Credentials.from_service_account_file(
                conn.google_credentials_file, scopes=[CLOUD_PLATFORM]
            )
            return creds, creds.project_id
        creds, project = auth.default(scopes=[CLOUD_PLATFORM])
    except Exception as exc:  # DefaultCredentialsError, unreadable key file
        raise ConfigurationError(
            f"model {settings.name!r} ({what}): no usable Google credentials "
            f"({type(exc).__name__}); set the connection's credentials or "
            "google_credentials_file, or GOOGLE_APPLICATION_CREDENTIALS"
        ) from None
    return creds, project


def google_token_cache(credentials: Any, what: str) -> TokenCache:
    """A :class:`TokenCache` over google-auth ``credentials.refresh()``."""
    transport = require("google.auth.transport.requests", "gcp", what)

    def fetch() -> tuple[str, float]:
        credentials.refresh(transport.Request())
        expiry = credentials.expiry  # naive UTC, per google-auth
        if expiry is None:
            return str(credentials.token), time.time() + 3600
        return str(credentials.token), expiry.replace(tzinfo=dt.UTC).timestamp()

    return TokenCache(fetch)
