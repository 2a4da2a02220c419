"""The aiohttp application and the `FakeEndpoint` controller.

Per-request work is kept to a minimum (one closure call, one ``orjson`` dump,
no access log, no middleware) so a single process sustains thousands of
requests per second and never becomes the bottleneck of a benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from types import TracebackType
from typing import Any, Literal

import orjson
from aiohttp import web

from devtools.fake_endpoint import protocols
from devtools.fake_endpoint.config import EndpointConfig, Fault, ScriptItem, retry_after_value
from devtools.fake_endpoint.stats import Counters, RecordedRequest, Stats, TokenBucket

Family = Literal["openai", "oip", "plain"]
Handler = Callable[[web.Request, Any], protocols.Reply]
MALFORMED_BODY = b'{"id": "truncated", "choices": [{"message": '
"""Served by the ``malformed`` fault: a 200 whose JSON is cut off mid-object."""

_JSON = "application/json"
_ABORTED = 499
"""Placeholder status of responses that are never sent (reset, stall)."""


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), status=status, headers=headers, content_type=_JSON
    )


def _error(
    family: Family, status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """Build an error in the format the real server of that protocol family uses."""
    if family == "openai":
        kind = "rate_limit_exceeded" if status == 429 else "invalid_request_error"
        payload: Any = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    else:
        payload = {"error": message}  # MLServer / plain JSON servers
    return _json(payload, status, headers)


def _abort(request: web.Request) -> web.Response:
    """Drop the connection with a TCP RST and no response bytes at all.

    ``SO_LINGER`` with a zero timeout makes ``close`` send RST instead of FIN,
    which is what a crashed server or a killed proxy looks like to a client.
    The returned response is never delivered: aiohttp notices the closed
    transport and discards it.
    """
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=_ABORTED)


class FakeEndpoint:
    """A deterministic, fault-injectable fake model server on 127.0.0.1.

    Example:
        >>> async with FakeEndpoint(latency=0.02) as ep:  # doctest: +SKIP
        ...     ep.script(429, "reset")
        ...     ...  # the next two requests fail, later ones succeed
        ...     assert ep.stats.by_route["/v1/chat/completions"] == 3

    Args:
        config: Initial configuration; defaults to `EndpointConfig()`.
        **overrides: Fields of `EndpointConfig` applied on top of ``config``.
    """

    def __init__(self, config: EndpointConfig | None = None, **overrides: Any) -> None:
        self._config = replace(config or EndpointConfig(), **overrides)
        self._counters = Counters(self._config.record_limit)
        self._script: deque[Fault] = deque()
        self._seq = itertools.count(1)
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._bucket: TokenBucket | None = None
        self._apply_config(self._config, None)

    # ----------------------------------------------------------------- config
    @property
    def config(self) -> EndpointConfig:
        """The active configuration; assign a new one to change behaviour mid-test."""
        return self._config

    @config.setter
    def config(self, new: EndpointConfig) -> None:
        old, self._config = self._config, new
        self._apply_config(new, old)

    def configure(self, **changes: Any) -> EndpointConfig:
        """Replace some config fields, e.g. ``ep.configure(error_rate=0.5)``.

        Returns:
            The new configuration.
        """
        self.config = replace(self._config, **changes)
        return self._config

    def _apply_config(self, new: EndpointConfig, old: EndpointConfig | None) -> None:
        """Rebuild the derived state a config change invalidates (RNGs, bucket, log size)."""
        if old is None or old.seed != new.seed:
            self._error_rng = random.Random(new.seed)
            self._jitter_rng = random.Random(new.seed + 1)
            self._slow_rng = random.Random(new.seed + 2)
        if old is None or (old.rate_limit_rps, old.rate_limit_burst) != (
            new.rate_limit_rps,
            new.rate_limit_burst,
        ):
            rps = new.rate_limit_rps
            burst = new.rate_limit_burst or max(1.0, rps or 1.0)
            self._bucket = None if rps is None else TokenBucket(rps, burst, time.monotonic())
        self._counters.resize(new.record_limit)

    def script(self, *responses: ScriptItem) -> None:
        """Queue faults to serve, one per request, before behaving normally again.

        Args:
            *responses: `Fault` objects or shorthand: an HTTP status (``429``
                gets ``Retry-After``), ``"malformed"``, ``"reset"`` or ``"stall"``.
        """
        self._script.extend(Fault.coerce(r, self._config.retry_after) for r in responses)

    def clear_script(self) -> None:
        """Drop scripted faults that have not been served yet."""
        self._script.clear()

    @property
    def pending_script(self) -> int:
        """Number of scripted faults not served yet."""
        return len(self._script)

    # ------------------------------------------------------------------ stats
    @property
    def stats(self) -> Stats:
        """A snapshot of the counters; later requests do not change it."""
        return self._counters.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters and forget recorded requests (in-flight keeps counting)."""
        self._counters.reset()

    # -------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``.

        Raises:
            RuntimeError: If the endpoint is not started.
        """
        if self._url is None:
            raise RuntimeError("FakeEndpoint is not started")
        return self._url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Bind and start serving.

        Args:
            host: Interface to bind; keep the loopback default.
            port: TCP port; 0 picks a free one.

        Returns:
            The base URL.
        """
        if self._runner is not None:
            raise RuntimeError("FakeEndpoint is already started")
        self._closing = asyncio.Event()  # fresh: an Event binds to the loop that first waits
        # handler_cancellation: a client that gives up cancels its handler, so a
        # stall ends (and in_flight drops) when the client times out.
        runner = web.AppRunner(
            self.build_app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        bound_port = runner.addresses[0][1]
        self._runner, self._url = runner, f"http://{host}:{bound_port}"
        return self._url

    async def stop(self) -> None:
        """Stop serving; stalled requests are reset so shutdown is quick."""
        self._closing.set()
        runner, self._runner, self._url = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeEndpoint:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ app
    def build_app(self) -> web.Application:
        """Build the aiohttp application (also usable with aiohttp's test client)."""
        routes: list[tuple[str, str, Family, Handler | None]] = [
            ("POST", "/v1/chat/completions", "openai", self._chat),
            ("POST", "/v1/embeddings", "openai", self._embeddings),
            ("GET", "/v1/models", "openai", self._models),
            ("POST", "/v2/models/{name}/infer", "oip", self._infer),
            ("POST", "/v2/models/{name}/versions/{version}/infer", "oip", self._infer),
            ("GET", "/v2/health/ready", "oip", lambda r, b: protocols.Reply({"ready": True}, 0)),
            ("GET", "/v2/health/live", "oip", lambda r, b: protocols.Reply({"live": True}, 0)),
            ("GET", "/v2/models/{name}/ready", "oip", self._model_ready),
            ("GET", "/v2/models/{name}/versions/{version}/ready", "oip", self._model_ready),
            ("GET", "/v2/models/{name}", "oip", self._model_metadata),
            ("POST", "/predict", "plain", self._predict),
            ("POST", "/echo", "plain", None),
        ]
        app = web.Application()
        for method, path, family, handler in routes:
            app.router.add_route(method, path, self._wrap(path, family, handler))
        app.router.add_get("/_stats", self._handle_stats)
        app.router.add_post("/_reset", self._handle_reset)
        return app

    # Handlers read self._config at request time because tests swap it mid-run.
    def _chat(self, request: web.Request, body: Any) -> protocols.Reply:
        return protocols.chat_completion(body, self._config, next(self._seq))

    def _embeddings(self, request: web.Request, body: Any) -> protocols.Reply:
        return protocols.embeddings(body, self._config)

    def _models(self, request: web.Request, body: Any) -> protocols.Reply:
        return protocols.Reply(protocols.list_models(self._config), 0)

    def _infer(self, request: web.Request, body: Any) -> protocols.Reply:
        name, version = request.match_info["name"], request.match_info.get("version")
        return protocols.oip_infer(body, name, version, self._config, next(self._seq))

    def _model_ready(self, request: web.Request, body: Any) -> protocols.Reply:
        return protocols.Reply({"name": request.match_info["name"], "ready": True}, 0)

    def _model_metadata(self, request: web.Request, body: Any) -> protocols.Reply:
        return protocols.Reply(protocols.oip_metadata(request.match_info["name"], self._config), 0)

    def _predict(self, request: web.Request, body: Any) -> protocols.Reply:
        return protocols.predict(body, self._config)

    def _wrap(
        self, route: str, family: Family, handler: Handler | None
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap a protocol handler with counting, recording and fault injection."""
        counters = self._counters  # never replaced, only cleared

        async def serve(request: web.Request) -> web.StreamResponse:
            counters.begin(route)
            status: int | None = None
            try:
                body = await request.read()
                counters.recent.append(
                    RecordedRequest(
                        request.method, request.path, request.query_string, request.headers, body
                    )
                )
                resp = await self._respond(request, body, family, handler)
                status = resp.status
                return resp
            finally:
                counters.in_flight -= 1
                if status is not None and status != _ABORTED:
                    counters.by_status[status] += 1

        return serve

    async def _respond(
        self, request: web.Request, body: bytes, family: Family, handler: Handler | None
    ) -> web.Response:
        cfg, counters = self._config, self._counters
        fault = self._script.popleft() if self._script else None
        if fault is None and self._bucket is not None:
            wait = self._bucket.take(time.monotonic())
            if wait > 0:
                counters.faults["rate_limited"] += 1
                headers = {"Retry-After": retry_after_value(wait)}
                return _error(family, 429, "rate limit exceeded", headers)
        if fault is not None and fault.kind == "stall":
            counters.faults["stall"] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), cfg.stall_max)
            return _abort(request)
        delay = cfg.latency + (self._jitter_rng.uniform(0.0, cfg.jitter) if cfg.jitter else 0.0)
        if cfg.slow_rate and self._slow_rng.random() < cfg.slow_rate:
            counters.faults["slow"] += 1
            delay = cfg.slow_latency
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is None and cfg.error_rate > 0 and self._error_rng.random() < cfg.error_rate:
            counters.faults["random_error"] += 1
            return _error(family, 500, "injected random failure")
        if fault is not None:
            counters.faults[fault.kind] += 1
            if fault.kind == "reset":
                return _abort(request)
            if fault.kind == "malformed":
                return web.Response(body=MALFORMED_BODY, content_type=_JSON)
            return _error(family, fault.status, fault.message, dict(fault.headers))
        if handler is None:  # /echo
            ctype = request.headers.get("Content-Type", _JSON)
            return web.Response(body=body, headers={"Content-Type": ctype})
        # A gzip body (Content-Encoding: gzip) arrives decompressed: aiohttp's
        # request parser undoes it, as MLServer and Triton do.
        binary_out = False
        header_length = request.headers.get("Inference-Header-Content-Length")
        try:
            if header_length is not None and family == "oip":
                payload, binary_out = protocols.oip_binary_request(body, header_length)
            else:
                payload = orjson.loads(body) if request.method == "POST" else None
        except orjson.JSONDecodeError as exc:
            return _error(family, 400, f"request body is not valid JSON: {exc}")
        except protocols.BadRequestError as exc:
            return _error(family, 400, str(exc))
        try:
            reply = handler(request, payload)
        except protocols.BadRequestError as exc:
            counters.rows += exc.rows
            return _error(family, 400, str(exc))
        counters.rows += reply.rows
        if binary_out:
            data, split = protocols.oip_binary_reply(reply.payload)
            headers = {"Inference-Header-Content-Length": str(split)}
            return web.Response(body=data, headers=headers, content_type="application/octet-stream")
        return _json(reply.payload)

    async def _handle_stats(self, request: web.Request) -> web.Response:
        try:
            recent = max(0, int(request.query.get("recent", "0")))
        except ValueError:
            return _error("plain", 400, "'recent' must be an integer")
        return _json(self.stats.to_dict(recent=recent))

    async def _handle_reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return _json({"reset": True})
