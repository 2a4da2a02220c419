"""AWS SigV4 for the bedrock and sagemaker providers: botocore's credentials and signer.

Requests go through our pooled aiohttp transport, not boto3 (whose calls
block the event loop); botocore only supplies what must not be written by
hand: the credential chain (environment, shared config and profiles, SSO,
container and instance roles) and ``botocore.auth.SigV4Auth``.

Credentials are resolved once, at registration. Temporary credentials
(roles, SSO) are refreshed by botocore; the refresh is a blocking HTTP call,
so it runs in a thread, and only when botocore says they are near expiry.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from faust_inference.config import ModelSettings
from faust_inference.connections import Connection
from faust_inference.exceptions import ConfigurationError
from faust_inference.providers.auth.sdk import require

__all__ = ["AwsSigner", "aws_signer"]


class AwsSigner:
    """Signs each request with SigV4 over its exact method, URL, headers and body.

    Example:
        >>> signer = aws_signer(settings, "bedrock", region, what="bedrock")  # doctest: +SKIP
        >>> await signer.headers("POST", url, body, {})  # doctest: +SKIP
        {'X-Amz-Date': '...', 'Authorization': 'AWS4-HMAC-SHA256 Credential=...'}
    """

    __slots__ = (
        "_auth",
        "_frozen",
        "_lock",
        "_request",
        "_source",
        "refreshes",
        "region",
        "service",
    )

    def __init__(self, credentials: Any, service: str, region: str) -> None:
        botocore_auth = require("botocore.auth", "aws", "AWS signing")
        self._auth = botocore_auth.SigV4Auth
        self._request = require("botocore.awsrequest", "aws", "AWS signing").AWSRequest
        self._source = credentials
        self._frozen: Any = None
        self._lock: asyncio.Lock | None = None
        self.service = service
        self.region = region
        self.refreshes = 0
        """How many times credentials were read from botocore (in a thread)."""

    async def headers(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Mapping[str, str]:
        """``Authorization``, ``X-Amz-Date`` and, for temporary credentials, the token header."""
        credentials = await self._credentials()
        request = self._request(method=method, url=url, data=body, headers=dict(headers))
        self._auth(credentials, self.service, self.region).add_auth(request)
        names = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")
        return {name: request.headers[name] for name in names if name in request.headers}

    def secrets(self) -> tuple[str, ...]:
        """The secret key and session token in use."""
        frozen = self._frozen
        if frozen is None:
            return ()
        return tuple(s for s in (frozen.secret_key, frozen.token) if s)

    async def _credentials(self) -> Any:
        if self._frozen is not None and not self._refresh_needed():
            return self._frozen
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._frozen is None or self._refresh_needed():
                # get_frozen_credentials() may call STS, SSO or the instance
                # metadata service: never on the event loop.
                self._frozen = await asyncio.to_thread(self._source.get_frozen_credentials)
                self.refreshes += 1
        return self._frozen

    def _refresh_needed(self) -> bool:
        # RefreshableCredentials.refresh_needed() only compares clocks; static
        # credentials have no such method and never expire.
        check = getattr(self._source, "refresh_needed", None)
        return bool(check()) if callable(check) else False


def aws_signer(
    settings: ModelSettings, service: str, region: str | None, *, what: str
) -> AwsSigner:
    """The signer for a model: credentials from its connection, else botocore's chain.

    Args:
        settings: the model's settings (its connection may hold keys or a profile).
        service: the SigV4 signing name (``bedrock``, ``sagemaker``).
        region: the region option, if the model gave one.
        what: the provider, for error messages.

    Raises:
        ConfigurationError: botocore missing, no region, or no credentials.
    """
    session_mod = require("botocore.session", "aws", what)
    credentials_mod = require("botocore.credentials", "aws", what)
    conn = settings.connection
    try:
        session = session_mod.Session(profile=conn.aws_profile if conn else None)
        region = (
            region
            or (conn.region if conn else None)
            # The SDKs' AWS_REGION; botocore itself reads AWS_DEFAULT_REGION and profiles.
            or os.environ.get("AWS_REGION")
            or session.get_config_variable("region")
        )
        if conn is not None and conn.credentials is not None:
            credentials = conn.credentials
        elif conn is not None and conn.aws_access_key_id is not None:
            assert conn.aws_secret_access_key is not None  # the connection checks the pair
            token = conn.aws_session_token
            credentials = credentials_mod.Credentials(
                conn.aws_access_key_id.get_secret_value(),
                conn.aws_secret_access_key.get_secret_value(),
                token.get_secret_value() if token else None,
            )
        else:
            credentials = session.get_credentials()
    except Exception as exc:  # botocore's profile and config errors
        raise ConfigurationError(
            f"model {settings.name!r} ({what}): AWS configuration failed "
            f"({type(exc).__name__}): {_aws_config_fix(exc, conn)}"
        ) from None
    if not region:
        raise ConfigurationError(
            f"model {settings.name!r} ({what}) needs an AWS region: pass region=, set it on "
            "the connection, or set AWS_REGION"
        )
    if credentials is None:
        raise ConfigurationError(
            f"model {settings.name!r} ({what}) found no AWS credentials: give the connection "
            "aws_access_key_id/aws_secret_access_key or aws_profile, or configure botocore's "
            "chain (AWS_ACCESS_KEY_ID, ~/.aws, a role)"
        )
    return AwsSigner(credentials, service, str(region))


_AWS_FILES = (
    "~/.aws/config or ~/.aws/credentials (or the files named by AWS_CONFIG_FILE / "
    "AWS_SHARED_CREDENTIALS_FILE)"
)


def _aws_config_fix(exc: Exception, conn: Connection | None) -> str:
    """What went wrong reading the AWS configuration, by setting, and what to check.

    botocore's own message is not quoted whole (a parse error may quote a
    line of the credentials file); only the names it carries (a profile,
    a path, a variable) are, which are not secrets.
    """
    said: dict[str, Any] = getattr(exc, "kwargs", None) or {}
    if conn is not None and conn.aws_profile:
        profile, source = conn.aws_profile, "from the connection's aws_profile"
    elif os.environ.get("AWS_PROFILE"):
        profile, source = os.environ["AWS_PROFILE"], "from AWS_PROFILE"
    else:
        profile, source = "default", "neither aws_profile nor AWS_PROFILE is set"
    name = type(exc).__name__
    if name == "ProfileNotFound":
        missing = said.get("profile", profile)
        via = source if missing == profile else f"used by profile {profile!r}"
        return (
            f"the profile {missing!r} ({via}) is not in {_AWS_FILES}: add it there or fix the name"
        )
    if name in ("ConfigParseError", "ConfigNotFound"):
        path = said.get("path", "?")
        return (
            f"the AWS config file {str(path)!r} cannot be read: fix it, "
            "or point AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE at a valid one"
        )
    if name == "PartialCredentialsError":
        return (
            f"credentials from {said.get('provider', 'botocore')!r} lack "
            f"{said.get('cred_var', 'a part')}: give both AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or the connection's aws_access_key_id and "
            "aws_secret_access_key)"
        )
    return (
        f"check the profile {profile!r} ({source}) in {_AWS_FILES}, the connection's "
        "aws_profile and region, and the AWS_PROFILE, "
        "AWS_REGION / AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables"
    )
