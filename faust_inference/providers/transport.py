"""HTTP for every provider: one pooled aiohttp session per origin, failures mapped once.

aiohttp, not httpx: against one 20 ms endpoint on the project's 2-core test
machines, 1,000 requests at 50 in flight, aiohttp 3.x sustained 1,680-2,030
requests/s and httpx 0.28 99-115 (``benchmarks/`` re-measures it), and Faust
already depends on aiohttp. Nothing outside this module imports aiohttp, so
the client can be swapped in one place.

A transport only moves bytes: it sends one request and returns the status,
headers and body, or raises :class:`~faust_inference.TransportError` /
:class:`~faust_inference.InferenceTimeout` when no whole answer arrived, or
:class:`~faust_inference.ResponseTooLarge` when the body passes the cap.
Reading statuses and bodies is the :class:`~faust_inference.providers.Endpoint`'s job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

import aiohttp

from faust_inference.exceptions import InferenceTimeout, ResponseTooLarge, TransportError
from faust_inference.providers.redaction import redact_url, scrub

__all__ = ["HttpTransport", "Response", "Transport", "TransportPool"]

DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024


class Response(NamedTuple):
    """One whole answer: status, headers and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one request and returns the whole answer; what an Endpoint needs to send."""

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> Response:
        """Send one request.

        Raises:
            TransportError: no whole answer (refused, reset, dropped).
            ResponseTooLarge: the body passed ``max_bytes``.
        """
        ...


class HttpTransport:
    """A keep-alive connection pool to one origin (scheme, host, port).

    Created by :class:`TransportPool`; endpoints call :meth:`request`.

    Example:
        >>> async def call(transport: HttpTransport):
        ...     return await transport.request(
        ...         "GET", "http://127.0.0.1:8080/v2/health/ready", None, {})
    """

    __slots__ = ("_session", "origin")

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            # No connection limit here: each model's runner caps its own
            # requests in flight, and several models may share one origin.
            # Idle sockets are dropped after 4 s: common servers (uvicorn,
            # MLServer) close theirs after 5 s, and reusing a socket the
            # server is closing costs a failed attempt.
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=4)
            session = aiohttp.ClientSession(
                connector=connector,
                # Model APIs do not use cookies; a shared jar would only leak
                # one model's cookies into another's requests.
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent",),
            )
            self._session = session
        return session

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> Response:
        """Send one request; returns status, headers and the whole body.

        The body is read in chunks and reading stops as soon as it passes
        ``max_bytes`` (a declared ``Content-Length`` over it fails before
        reading), so one huge answer cannot take the worker's memory.

        Raises:
            TransportError: the connection failed before a whole answer arrived.
            InferenceTimeout: the socket timed out.
            ResponseTooLarge: the body passed ``max_bytes``.
        """
        try:
            async with self._client().request(method, url, data=body, headers=headers) as resp:
                return Response(resp.status, resp.headers, await _read(resp, url, max_bytes))
        except TimeoutError as exc:
            raise InferenceTimeout(f"{method} {redact_url(url)} timed out") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"{method} {redact_url(url)} failed: {type(exc).__name__}: {scrub(str(exc))}"
            ) from exc
        except OSError as exc:
            raise TransportError(
                f"{method} {redact_url(url)} failed: {type(exc).__name__}: {exc.strerror or exc}"
            ) from exc

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


async def _read(resp: aiohttp.ClientResponse, url: str, max_bytes: int) -> bytes:
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        raise _too_large(url, max_bytes, f"declares {declared} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(url, max_bytes, f"passed {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(url: str, max_bytes: int, what: str) -> ResponseTooLarge:
    return ResponseTooLarge(
        f"{redact_url(url)}: the answer {what}, over the model's max_response_bytes="
        f"{max_bytes}; raise max_response_bytes= or ask for less (smaller batch_size)"
    )


class TransportPool:
    """Hands out one :class:`HttpTransport` per origin, so models on one server share sockets.

    Example:
        >>> pool = TransportPool()
        >>> pool.get("http://127.0.0.1:8080/a") is pool.get("http://127.0.0.1:8080/b")
        True
    """

    __slots__ = ("_transports",)

    def __init__(self) -> None:
        self._transports: dict[str, HttpTransport] = {}

    def get(self, url: str) -> HttpTransport:
        """The transport for ``url``'s origin."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"
        transport = self._transports.get(origin)
        if transport is None:
            transport = self._transports[origin] = HttpTransport(origin)
        return transport

    async def aclose(self) -> None:
        """Close every transport."""
        transports, self._transports = list(self._transports.values()), {}
        await asyncio.gather(*(t.aclose() for t in transports), return_exceptions=True)
