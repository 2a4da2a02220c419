"""HTTP for every provider: one pooled aiohttp session per origin, errors mapped once.

aiohttp, not httpx: against one 20 ms endpoint on the project's 2-core test
machines, 1,000 requests at 50 in flight, aiohttp 3.x sustained 1,680-2,030
requests/s and httpx 0.28 99-115 (``benchmarks/`` re-measures it), and Faust
already depends on aiohttp. Nothing outside this module imports aiohttp, so
the client can be swapped in one place.

Every failure leaves this module as a :mod:`faust_inference.exceptions`
error with ``retryable`` set; URLs in messages lose their query string and
known secrets are scrubbed, so an error can be logged as it is.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from faust_inference.exceptions import (
    ClientError,
    InferenceTimeout,
    RateLimited,
    ResponseDecodeError,
    ServerError,
    TransportError,
)

__all__ = ["HttpTransport", "TransportPool", "parse_retry_after"]

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_TOKEN_LIKE = re.compile(r"(sk-[A-Za-z0-9_\-*]{4,}|Bearer\s+\S+|key=[^&\s\"']+)")
_BODY_EXCERPT = 300


class HttpTransport:
    """A keep-alive connection pool to one origin (scheme, host, port).

    Created by :class:`TransportPool`; providers call :meth:`post_json`.

    Example:
        >>> async def call(transport: HttpTransport):
        ...     return await transport.post_json("http://127.0.0.1:8080/v2/models/m/infer",
        ...                                      {"inputs": []})
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

    async def post_json(
        self,
        url: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
    ) -> Any:
        """POST ``payload`` as JSON and return the decoded JSON answer.

        Args:
            url: the full URL.
            payload: anything orjson can encode.
            headers: extra headers, credentials included; never echoed in errors.
            secrets: strings to scrub from any error message built from the answer.

        Raises:
            TransportError: no answer (connection refused or reset).
            RateLimited: 429, with the server's ``Retry-After``.
            ServerError: 5xx.
            ClientError: another non-2xx status.
            ResponseDecodeError: a 2xx answer that is not JSON.
        """
        body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        all_headers = {**_JSON_HEADERS, **headers} if headers else _JSON_HEADERS
        status, resp_headers, data = await self.request("POST", url, body, all_headers)
        if status >= 300:
            raise status_error(status, resp_headers, data, url, secrets)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ResponseDecodeError(
                f"{redact_url(url)} answered {status} with a body that is not JSON: "
                f"{_excerpt(data, secrets)!r}"
            ) from exc

    async def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send one request; returns status, headers and the whole body.

        Raises:
            TransportError: the connection failed before a whole answer arrived.
            InferenceTimeout: the socket timed out.
        """
        try:
            async with self._client().request(method, url, data=body, headers=headers) as resp:
                return resp.status, resp.headers, await resp.read()
        except TimeoutError as exc:
            raise InferenceTimeout(f"{method} {redact_url(url)} timed out") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"{method} {redact_url(url)} failed: {type(exc).__name__}: {_safe(str(exc))}"
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


class TransportPool:
    """Hands out one :class:`HttpTransport` per origin, so models on one server share sockets."""

    __slots__ = ("_transports",)

    def __init__(self) -> None:
        self._transports: dict[str, HttpTransport] = {}

    def get(self, url: str) -> HttpTransport:
        """The transport for ``url``'s origin."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        transport = self._transports.get(origin)
        if transport is None:
            transport = self._transports[origin] = HttpTransport(origin)
        return transport

    async def aclose(self) -> None:
        """Close every transport."""
        transports, self._transports = list(self._transports.values()), {}
        await asyncio.gather(*(t.aclose() for t in transports), return_exceptions=True)


def status_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    url: str,
    secrets: Iterable[str] = (),
) -> ClientError | RateLimited | ServerError:
    """The exception for a non-2xx answer; the one place statuses are classified."""
    message = f"{redact_url(url)} answered {status}: {_excerpt(body, secrets)}"
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status == 429:
        return RateLimited(message, status=status, retry_after=retry_after)
    if status >= 500 or status == 408:
        return ServerError(message, status=status, retry_after=retry_after)
    return ClientError(message, status=status, retry_after=retry_after)


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


def redact_url(url: str) -> str:
    """``url`` without its query string or user info, where keys tend to hide."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _safe(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _TOKEN_LIKE.sub("***", text)


def _excerpt(body: bytes, secrets: Iterable[str] = ()) -> str:
    text = body[:_BODY_EXCERPT].decode("utf-8", "replace")
    if len(body) > _BODY_EXCERPT:
        text += "..."
    return _safe(text, secrets)
