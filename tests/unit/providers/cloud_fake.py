"""A fake cloud endpoint for request-format and error-mapping tests of the cloud providers.

It is a test double, and only that: AWS, Azure and Google Cloud cannot be
reached from the test machines, so each provider is pointed (``endpoint=``) at
this aiohttp server on 127.0.0.1. It records every request exactly as received
(method, raw path and query, headers, body) and answers through a function
the test gives, so that answers are computed from the request, in the
response shape of the cloud's API reference. For AWS, :func:`verify_sigv4`
recomputes the SigV4 signature of a received request with botocore, from the
same static test credentials, and compares it with the one sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Received:
    method: str
    path: str
    """Raw path and query string, as sent on the wire."""
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


Reply = tuple[int, dict[str, str], bytes]


def json_reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, orjson.dumps(payload)


class FakeCloud:
    """``async with FakeCloud(handler) as cloud``: ``cloud.url``, ``cloud.requests``."""

    def __init__(self, handler: Callable[[Received], Reply]) -> None:
        self.handler = handler
        self.requests: list[Received] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(
            request.method,
            request.raw_path,
            {k: v for k, v in request.headers.items()},
            await request.read(),
        )
        self.requests.append(received)
        status, headers, body = self.handler(received)
        return web.Response(status=status, headers=headers, body=body)

    async def __aenter__(self) -> FakeCloud:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def last(self) -> Received:
        return self.requests[-1]


def verify_sigv4(
    received: Received,
    *,
    access_key: str,
    secret_key: str,
    token: str | None,
    service: str,
    region: str,
) -> list[str]:
    """Recompute the request's SigV4 signature with botocore; returns the signed header names.

    Raises AssertionError when the signature, scope or key id does not match.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    authorization = received.headers["Authorization"]
    algorithm, _, rest = authorization.partition(" ")
    assert algorithm == "AWS4-HMAC-SHA256"
    parts = dict(p.strip().split("=", 1) for p in rest.split(","))
    key_id, date, scope_region, scope_service, terminator = parts["Credential"].split("/")
    assert (key_id, scope_region, scope_service, terminator) == (
        access_key,
        region,
        service,
        "aws4_request",
    )
    timestamp = received.headers["X-Amz-Date"]
    assert timestamp.startswith(date)
    signed = parts["SignedHeaders"].split(";")
    lower = {k.lower(): v for k, v in received.headers.items()}
    request = AWSRequest(
        method=received.method,
        url=f"http://{lower['host']}{received.path}",
        data=received.body,
        headers={name: lower[name] for name in signed},
    )
    request.context["timestamp"] = timestamp
    signer = SigV4Auth(Credentials(access_key, secret_key, token), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    assert hmac.compare_digest(expected, parts["Signature"]), "SigV4 signature mismatch"
    return signed
