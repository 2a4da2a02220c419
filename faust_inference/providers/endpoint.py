"""One ``Endpoint`` for every provider: the one path a request takes.

Every built-in provider, and any plugin that wants it, sends through an
:class:`Endpoint`, so that headers, credentials, encoding, decoding, the
response-size cap and error classification are written once::

    endpoint = Endpoint.for_model(settings, transports, url, key=api_key)
    answer = await endpoint.post({"inputs": [...]})      # encoded, sent, decoded

What varies between providers is passed in, not copied:

- ``auth``: a :class:`~faust_inference.providers.auth.RequestAuth` for
  credentials computed per request (expiring tokens, SigV4 over the body);
  static keys and the ``Basic`` credentials of a URL's userinfo are plain
  headers;
- ``classify``: an :data:`~faust_inference.providers.classify.ErrorClassifier`
  for a cloud's own error codes (default: by status);
- ``codec``: how a payload becomes bytes and an answer becomes data
  (default JSON; a binary tensor format or compression plugs in here);
- ``transport``: what moves the bytes (default one pooled aiohttp session
  per origin; a pool of replicas can stand in).

Nothing the endpoint raises contains a credential: every message is
scrubbed of :meth:`Endpoint.secrets` before it is cut. Those are the keys
it was given, the URL's userinfo, and the values of its auth-like headers
(:func:`~faust_inference.providers.redaction.is_secret_header`: a gateway
key in ``headers=`` counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import orjson
import yarl

from faust_inference.config import ModelSettings
from faust_inference.exceptions import ResponseDecodeError
from faust_inference.providers.auth.keys import api_key_header, basic_auth
from faust_inference.providers.auth.tokens import RequestAuth
from faust_inference.providers.classify import ErrorClassifier, status_error
from faust_inference.providers.redaction import excerpt, header_secrets, redact_url, url_secrets
from faust_inference.providers.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Response,
    Transport,
    TransportPool,
)

__all__ = ["JSON", "Codec", "Endpoint", "JsonCodec", "request_url"]


class Codec(Protocol):
    """How a payload becomes a request body, and an answer's body becomes data."""

    content_type: str
    """The request's ``Content-Type`` (and ``Accept``)."""

    def encode(self, payload: Any) -> bytes:
        """The request body for ``payload``."""
        ...

    def decode(self, body: bytes, headers: Mapping[str, str]) -> Any:
        """The answer as data.

        Raises:
            ValueError: the body is not in this format.
        """
        ...


class JsonCodec:
    """JSON with orjson; numpy arrays and scalars are encoded as lists and numbers.

    Example:
        >>> JSON.decode(JSON.encode({"a": [1, 2]}), {})
        {'a': [1, 2]}
    """

    content_type = "application/json"

    def encode(self, payload: Any) -> bytes:
        """``payload`` as JSON bytes."""
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)

    def decode(self, body: bytes, headers: Mapping[str, str]) -> Any:
        """The decoded JSON (``ValueError`` when it is not JSON)."""
        return orjson.loads(body)


JSON = JsonCodec()
"""The default codec."""


class Endpoint:
    """One URL of a model server, and everything needed to call it.

    Build it with :meth:`for_model` (credentials from the model's settings)
    or directly. The repr shows the URL without credentials.

    Example:
        >>> from faust_inference.providers import TransportPool
        >>> ep = Endpoint("http://bob:pw-123@127.0.0.1:8080/v2/models/m/infer", TransportPool())
        >>> ep
        Endpoint('http://127.0.0.1:8080/v2/models/m/infer')
        >>> ep.headers["Authorization"]
        'Basic Ym9iOnB3LTEyMw=='

    Args:
        url: the full URL requests go to; userinfo becomes a ``Basic`` header.
        transports: a :class:`TransportPool` (its transport for the URL's
            origin is used) or a :class:`~faust_inference.providers.transport.Transport`.
        headers: headers every request carries (static credentials included);
            the values of auth-like ones are added to :meth:`secrets`.
        auth: credentials computed per request.
        classify: turns a non-2xx answer into one of our errors.
        codec: encodes payloads and decodes answers for :meth:`post`.
        secrets: strings to scrub from every message (static keys).
        max_response_bytes: reading an answer stops past this size.
    """

    __slots__ = (
        "_secrets",
        "auth",
        "classify",
        "codec",
        "headers",
        "max_response_bytes",
        "transport",
        "url",
    )

    def __init__(
        self,
        url: str,
        transports: TransportPool | Transport,
        *,
        headers: Mapping[str, str] | None = None,
        auth: RequestAuth | None = None,
        classify: ErrorClassifier = status_error,
        codec: Codec = JSON,
        secrets: tuple[str, ...] = (),
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        url, basic, basic_secrets = basic_auth(url)
        self.url = url
        self.transport: Transport = (
            transports.get(url) if isinstance(transports, TransportPool) else transports
        )
        self.headers: dict[str, str] = {**basic, **(headers or {})}
        self.auth = auth
        self.classify = classify
        self.codec = codec
        self.max_response_bytes = max_response_bytes
        # Values of auth-like headers (a gateway key in headers=) are secrets too,
        # whoever set them: the model's settings, the provider or a plugin.
        found = (*secrets, *basic_secrets, *header_secrets(self.headers))
        self._secrets = tuple(dict.fromkeys(s for s in found if s))

    @classmethod
    def for_model(
        cls,
        settings: ModelSettings,
        transports: TransportPool | Transport,
        url: str,
        *,
        key: str | None = None,
        key_header: str = "Authorization",
        key_scheme: str = "Bearer",
        headers: Mapping[str, str] | None = None,
        auth: RequestAuth | None = None,
        classify: ErrorClassifier = status_error,
        codec: Codec = JSON,
        secrets: tuple[str, ...] = (),
    ) -> Endpoint:
        """The endpoint of a model: its headers, its API key (if any), its size cap.

        Args:
            settings: the model's settings (``headers``, ``max_response_bytes``,
                the endpoint's credentials).
            transports: the registry's transport pool.
            url: the full URL, built by the provider.
            key: the API key (from :func:`~faust_inference.providers.resolve_api_key`).
            key_header: the header that carries the key (``Authorization``).
            key_scheme: the key's prefix in that header (``Bearer``; empty for none).
            headers: more headers (after the model's own).
            auth: credentials computed per request.
            classify: turns a non-2xx answer into one of our errors.
            codec: encodes payloads and decodes answers.
            secrets: more strings to scrub (auth-like headers' values are
                added without being listed here).
        """
        secrets = (*secrets, key) if key else secrets
        if settings.endpoint:
            secrets += url_secrets(settings.endpoint)
        return cls(
            url,
            transports,
            headers={
                **settings.headers,
                **(headers or {}),
                **api_key_header(key, header=key_header, scheme=key_scheme),
            },
            auth=auth,
            classify=classify,
            codec=codec,
            secrets=secrets,
            max_response_bytes=settings.max_response_bytes,
        )

    def secrets(self) -> tuple[str, ...]:
        """Every credential string in use now, to scrub from messages and logs."""
        if self.auth is None:
            return self._secrets
        return self._secrets + self.auth.secrets()

    async def post(self, payload: Any, *, url: str | None = None) -> Any:
        """Encode ``payload``, POST it, and decode the answer.

        Raises:
            ProviderError: the call failed (classified by ``classify``), or
                the answer could not be decoded (:class:`ResponseDecodeError`).
        """
        response = await self.send(self.codec.encode(payload), url=url)
        return self.decode(response.body, response.headers)

    async def send(
        self,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        method: str = "POST",
        url: str | None = None,
    ) -> Response:
        """Send raw bytes; the whole answer when its status is 2xx.

        Args:
            body: the request body, already encoded.
            headers: request headers for this call (``Content-Type`` ...);
                the codec's are used when not given.
            method: the HTTP method.
            url: another URL on the same server (default: the endpoint's).

        Raises:
            ProviderError: no answer, or a non-2xx one, classified by ``classify``.
        """
        response = await self.request(method, url, body, headers)
        if response.status >= 300:
            raise self.classify(
                response.status, response.headers, response.body, url or self.url, self.secrets()
            )
        return response

    async def request(
        self,
        method: str,
        url: str | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request with the endpoint's credentials; any status is returned.

        For probes (readiness checks) that read the status themselves.

        Raises:
            TransportError: no whole answer.
            ResponseTooLarge: the answer passed ``max_response_bytes``.
        """
        target = url or self.url
        if headers is None:
            kind = self.codec.content_type
            headers = {"Content-Type": kind, "Accept": kind} if body else {"Accept": kind}
        all_headers = {**headers, **self.headers}
        if self.auth is not None:
            all_headers.update(await self.auth.headers(method, target, body or b"", all_headers))
        return await self.transport.request(
            method, target, body, all_headers, max_bytes=self.max_response_bytes
        )

    def decode(self, body: bytes, headers: Mapping[str, str] | None = None) -> Any:
        """Decode an answer's body with the codec.

        Raises:
            ResponseDecodeError: the body is not in the codec's format; the
                message quotes its start, scrubbed.
        """
        try:
            return self.codec.decode(body, headers or {})
        except ValueError:
            raise ResponseDecodeError(
                f"{redact_url(self.url)} answered with a body that is not "
                f"{self.codec.content_type.rpartition('/')[2].upper()}: "
                f"{excerpt(body, self.secrets())!r}"
            ) from None

    def bad_answer(self, problem: str, answer: Any = None) -> ResponseDecodeError:
        """The error for a decoded answer that does not follow the protocol.

        When the answer carries the server's own words (``{"error": ...}``,
        ``detail``, ``message``, as servers send with a 200 on failure),
        they are kept in the message, scrubbed and cut.

        Example:
            >>> ep = Endpoint("http://127.0.0.1:8080/v2/models/m/infer", TransportPool())
            >>> str(ep.bad_answer("no 'outputs' list", {"error": "model m is loading"}))[-54:]
            "no 'outputs' list; the server said: model m is loading"
        """
        message = f"{redact_url(self.url)}: {problem}"
        said = _server_words(answer)
        if said:
            message += f"; the server said: {excerpt(said, self.secrets())}"
        return ResponseDecodeError(message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.url)!r})"


def _server_words(answer: Any) -> str | None:
    if not isinstance(answer, dict):
        return None
    for key in ("error", "detail", "message", "errors"):
        value = answer.get(key)
        if isinstance(value, dict):
            value = value.get("message") or value.get("detail") or value
        if value:
            return value if isinstance(value, str) else orjson.dumps(value).decode()
    return None


def request_url(url: str) -> str:
    """``url`` exactly as the transport will send it.

    aiohttp normalises URLs (``%3A`` becomes ``:``); a signature must cover
    the path that is actually sent, so signed URLs are normalised first.

    Example:
        >>> request_url("https://h/model/anthropic.claude-v2%3A1/invoke")
        'https://h/model/anthropic.claude-v2:1/invoke'
    """
    return str(yarl.URL(url))
