"""Credentials computed per request, and bearer tokens that expire.

Getting a token is a blocking call (an HTTP round trip inside google-auth or
azure-identity), so it runs in a thread (:func:`asyncio.to_thread`), once per
expiry, never on every request (:class:`TokenCache`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from faust_inference.exceptions import TransportError

__all__ = ["RequestAuth", "TokenAuth", "TokenCache"]

log = logging.getLogger(__name__)


@runtime_checkable
class RequestAuth(Protocol):
    """Adds the credential headers to one request, just before it is sent.

    Example:
        >>> class Static:
        ...     async def headers(self, method, url, body, headers):
        ...         return {"X-Token": "t-123"}
        ...     def secrets(self):
        ...         return ("t-123",)
        >>> isinstance(Static(), RequestAuth)
        True
    """

    async def headers(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Mapping[str, str]:
        """Headers to add (``Authorization`` ...) for this exact request."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Credential strings currently in use, to scrub from every message."""
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

    __slots__ = (
        "_expires_at",
        "_fetch",
        "_lock",
        "_previous",
        "_token",
        "fetches",
        "refresh_margin",
    )

    def __init__(
        self, fetch: Callable[[], tuple[str, float]], *, refresh_margin: float = 300.0
    ) -> None:
        self._fetch = fetch
        self.refresh_margin = refresh_margin
        self._token: str | None = None
        self._previous: str | None = None
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
        if self._token is not None and self._token != token:
            # A request sent with the old token may still be answered (and
            # echoed) after the refresh: keep scrubbing it.
            self._previous = self._token
        self._token, self._expires_at = token, float(expires_at)

    def current(self) -> str | None:
        """The cached token, if any."""
        return self._token

    def secrets(self) -> tuple[str, ...]:
        """The current token and the one it replaced, to scrub from messages."""
        return tuple(t for t in (self._token, self._previous) if t)


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """``Authorization: Bearer <token>`` from a :class:`TokenCache`.

    Example:
        >>> auth = TokenAuth(TokenCache(lambda: ("tok-1", time.time() + 3600)))
        >>> asyncio.run(auth.headers("POST", "https://h/p", b"", {}))
        {'Authorization': 'Bearer tok-1'}
    """

    cache: TokenCache
    header: str = "Authorization"
    scheme: str = "Bearer"

    async def headers(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Mapping[str, str]:
        """The bearer header with a token that is not about to expire."""
        return {self.header: f"{self.scheme} {await self.cache.token()}"}

    def secrets(self) -> tuple[str, ...]:
        """The tokens in use (the current one and the one it replaced)."""
        return self.cache.secrets()
