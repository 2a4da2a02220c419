"""Any JSON-over-HTTP model endpoint, described by two functions.

By default a batch is sent as ``{"inputs": [...]}`` and the answer is read
from ``{"outputs": [...]}``; ``request_builder`` and ``response_parser``
adapt it to any other shape::

    sentiment = app.model(
        "sentiment", provider="http", endpoint="http://127.0.0.1:9000",
        path="/score", batch_size=8,
        request_builder=lambda texts: {"texts": texts},
        response_parser=lambda body, n: [item["label"] for item in body["results"]],
    )

Options:
    path: appended to the endpoint (default none).
    request_builder: ``inputs -> JSON body``.
    response_parser: ``(decoded body, number of inputs) -> one output per input``;
        an exception it raises is reported as a malformed answer.
    auth_header: header that carries the API key (default ``Authorization``).
    auth_scheme: prefix of the key in that header (default ``Bearer``; empty for none).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from faust_inference.config import ModelSettings
from faust_inference.core.provider import Predictions
from faust_inference.exceptions import ConfigurationError
from faust_inference.providers.auth.keys import resolve_api_key
from faust_inference.providers.endpoint import Endpoint
from faust_inference.providers.options import ProviderOptions, parse_answer, parse_options
from faust_inference.providers.pool import PoolEndpoint, replica_secrets, replica_wire
from faust_inference.providers.structured import structured_output
from faust_inference.providers.transport import TransportPool

__all__ = ["HttpOptions", "HttpProvider", "create"]


def _default_request(inputs: list[Any]) -> Any:
    return {"inputs": inputs}


def _default_response(body: Any, n: int) -> Sequence[Any]:
    outputs: Sequence[Any] = body["outputs"]
    return outputs


class HttpOptions(ProviderOptions):
    """Options of the ``http`` provider."""

    path: str = ""
    request_builder: Callable[[list[Any]], Any] = _default_request
    response_parser: Callable[[Any, int], Sequence[Any]] = _default_response
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"


class HttpProvider:
    """POSTs the built body to the model's URL (or one of its replicas) and parses the answer."""

    max_batch_size: int | None = None
    pooled = True
    """Balances ``endpoint=[...]`` replicas and hedges (:func:`.pool.replica_wire`)."""

    def __init__(
        self,
        options: HttpOptions,
        endpoint: Endpoint,
        *,
        replicas: Sequence[Endpoint] = (),
        wire: PoolEndpoint | None = None,
    ) -> None:
        self.options = options
        self.endpoint = endpoint
        self.url = endpoint.url
        self._replicas = list(replicas) or [endpoint]
        self.wire: PoolEndpoint = wire or endpoint
        """What requests go through: the endpoint, or a pool of the replicas."""

    async def infer(self, inputs: Sequence[Any]) -> Predictions:
        """One request for the whole batch."""
        body = self.options.request_builder(list(inputs))
        answer = await self.wire.post(body)
        return Predictions(
            parse_answer(self.options.response_parser, answer, len(inputs), self.url)
        )

    def secrets(self) -> tuple[str, ...]:
        """The credentials this provider sends, to every replica (to scrub from messages)."""
        return replica_secrets(self._replicas)

    async def aclose(self) -> None:
        """The transport is shared and closed by its pool."""


def create(settings: ModelSettings, transports: TransportPool) -> HttpProvider:
    """Build a plain-HTTP provider from a model's settings."""
    options = parse_options(settings, HttpOptions)
    if settings.endpoint is None:
        raise ConfigurationError(f"model {settings.name!r}: the http provider needs endpoint=")
    path = options.path if not options.path or options.path.startswith("/") else f"/{options.path}"
    structured_output(settings, supported=False, what="the http provider")
    key = resolve_api_key(settings, default_env=None, required=False)
    replicas = [
        Endpoint.for_model(
            settings,
            transports,
            f"{root}{path}",
            key=key,
            key_header=options.auth_header,
            key_scheme=options.auth_scheme,
        )
        for root in settings.replica_urls
    ]
    wire = replica_wire(settings, replicas)
    return HttpProvider(options, replicas[0], replicas=replicas, wire=wire)
