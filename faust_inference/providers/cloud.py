"""What the cloud providers share: signed or token-authenticated requests, cached tokens.

A cloud request differs from a plain JSON post in three ways, and each is
handled here once:

- its credentials change while the worker runs (SigV4 signs every request
  over its body; Entra ID and Google OAuth tokens expire), so headers are
  computed per request by a :class:`RequestAuth`;
- getting a token or refreshing AWS credentials is a blocking call (an HTTP
  round trip inside botocore, google-auth or azure-identity), so it runs in a
  thread (:func:`asyncio.to_thread`), once per expiry, never on every request
  (:class:`TokenCache`);
- each cloud says "slow down" or "not ready" in its own words, so each gives
  an :data:`ErrorClassifier` that turns its error bodies into our exceptions.

Cloud SDKs are optional extras, imported only when a model needs them
(:func:`require`).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import orjson
import yarl

from faust_inference.exceptions import (
    ClientError,
    ConfigurationError,
    RateLimited,
    RemoteError,
    ResponseDecodeError,
    ServerError,
    TransportError,
)
from faust_inference.providers.base import JsonEndpoint
from faust_inference.providers.transport import redact_url, status_error

__all__ = [
    "CloudEndpoint",
    "ErrorClassifier",
    "RequestAuth",
    "TokenAuth",
    "TokenCache",
    "error_json",
    "header",
    "json_body",
    "kind_of",
    "reclassify",
    "request_url",
    "require",
]

log = logging.getLogger(__name__)

ErrorClassifier = Callable[[int, Mapping[str, str], bytes, str, tuple[str, ...]], RemoteError]
"""``(status, headers, body, url, secrets) -> error`` for a non-2xx answer."""

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import an optional cloud SDK, or say which extra installs it.

    Example:
        >>> require("json", "aws", "the bedrock provider").__name__
        'json'

    Raises:
        ConfigurationError: the module is not installed; names the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise ConfigurationError(
            f"{what} needs {package}, which is not installed: "
            f"pip install 'faust-inference[{extra}]'"
        ) from None


class RequestAuth(Protocol):
    """Adds the credential headers to one request, just before it is sent."""

    async def headers(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Mapping[str, str]:
        """Headers to add (``Authorization`` ...) for this exact request."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Credential strings currently in use, to scrub from error messages."""
        ...


class TokenCache:
    """A bearer token fetched in a thread and reused until shortly before it expires.

    ``fetch`` is the SDK's blocking call; it returns the token and its expiry
    (epoch seconds). Concurrent requests that find the token stale wait for
    one refresh instead of starting one each. If a refresh fails while the
    old token is still valid, the old one is used and the failure logged.

    Example:
        >>> cache = TokenCache(lambda: ("tok", time.time() + 3600), refresh_margin=300)
        >>> asyncio.run(cache.token())
        'tok'
    """

    __slots__ = ("_expires_at", "_fetch", "_lock", "_token", "fetches", "refresh_margin")

    def __init__(
        self, fetch: Callable[[], tuple[str, float]], *, refresh_margin: float = 300.0
    ) -> None:
        self._fetch = fetch
        self.refresh_margin = refresh_margin
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock: asyncio.Lock | None = None
        self.fetches = 0
        """How many times the SDK was asked for a token (tests and debugging)."""

    def _fresh(self) -> bool:
        return self._token is not None and time.time() < self._expires_at - self.refresh_margin

    async def token(self) -> str:
        """The current token; refreshed in a thread when it is near expiry.

        Raises:
            TransportError: no token could be obtained (retryable: identity
                endpoints fail transiently too).
        """
        if self._fresh():
            assert self._token is not None
            return self._token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._fresh():
                await self._refresh()
        assert self._token is not None
        return self._token

    async def _refresh(self) -> None:
        self.fetches += 1
        try:
            token, expires_at = await asyncio.to_thread(self._fetch)
        except Exception as exc:
            if self._token is not None and time.time() < self._expires_at:
                log.warning("token refresh failed, using the current token: %s", type(exc).__name__)
                return
            # SDK messages may quote request details; only the type is safe to show.
            raise TransportError(f"could not get an access token: {type(exc).__name__}") from None
        self._token, self._expires_at = token, float(expires_at)

    def current(self) -> str | None:
        """The cached token, if any (for scrubbing)."""
        return self._token


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """``Authorization: Bearer <token>`` from a :class:`TokenCache`."""

    cache: TokenCache
    header: str = "Authorization"
    scheme: str = "Bearer"

    async def headers(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Mapping[str, str]:
        """The bearer header with a token that is not about to expire."""
        return {self.header: f"{self.scheme} {await self.cache.token()}"}

    def secrets(self) -> tuple[str, ...]:
        """The token in use."""
        token = self.cache.current()
        return (token,) if token else ()


@dataclass(frozen=True, slots=True)
class CloudEndpoint(JsonEndpoint):
    """A :class:`JsonEndpoint` whose credentials are computed per request.

    Static headers (API keys) travel as in :class:`JsonEndpoint`; ``auth``
    adds signed or token headers over the exact bytes sent, and ``classify``
    maps the cloud's error bodies. The repr shows the URL only.
    """

    auth: RequestAuth | None = None
    classify: ErrorClassifier = field(default=status_error)

    async def post(self, body: Any) -> Any:
        """POST ``body`` as JSON; the decoded answer, or one of our errors."""
        _, data = await self.send(json_body(body), _JSON)
        return self.decode(data)

    async def send(
        self, body: bytes, headers: Mapping[str, str]
    ) -> tuple[Mapping[str, str], bytes]:
        """POST raw bytes with extra ``headers``; the answer's headers and body.

        Raises:
            ProviderError: the call failed, classified by ``classify``.
        """
        all_headers = {**headers, **self.headers}
        if self.auth is not None:
            all_headers.update(await self.auth.headers("POST", self.url, body, all_headers))
        status, resp_headers, data = await self.transport.request(
            "POST", self.url, body, all_headers
        )
        if status >= 300:
            secrets = self.secrets + (self.auth.secrets() if self.auth else ())
            raise self.classify(status, resp_headers, data, self.url, secrets)
        return resp_headers, data

    def decode(self, data: bytes) -> Any:
        """Decode a JSON answer body.

        Raises:
            ResponseDecodeError: the body is not JSON.
        """
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ResponseDecodeError(
                f"{redact_url(self.url)} answered with a body that is not JSON"
            ) from None

    def __repr__(self) -> str:
        return f"CloudEndpoint({self.url!r})"


def json_body(payload: Any) -> bytes:
    """The bytes of ``payload`` as JSON, as every provider sends them."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


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


def request_url(url: str) -> str:
    """``url`` exactly as the transport will send it.

    aiohttp normalises URLs (``%3A`` becomes ``:``); a signature must cover
    the path that is actually sent, so signed URLs are normalised first.

    Example:
        >>> request_url("https://h/model/anthropic.claude-v2%3A1/invoke")
        'https://h/model/anthropic.claude-v2:1/invoke'
    """
    return str(yarl.URL(url))


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively (plain dicts in tests, multidicts on the wire)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)
