"""google-auth credentials and tokens, for the vertex provider.

Vertex AI takes an OAuth access token from google-auth credentials: the
connection's ``credentials`` object, its ``google_credentials_file`` (a
service-account key), or Application Default Credentials. Refreshing a token
is a blocking HTTP call, so it runs in a thread and only when the token is
within five minutes of expiry (:class:`.TokenCache`).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from faust_inference.config import ModelSettings
from faust_inference.exceptions import ConfigurationError
from faust_inference.providers.auth.sdk import require
from faust_inference.providers.auth.tokens import TokenCache

__all__ = ["CLOUD_PLATFORM", "google_credentials", "google_token_cache"]

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


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
