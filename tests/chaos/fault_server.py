"""A model server that misbehaves on cue: the chaos tests' fault injection.

A test double, on purpose: it speaks just enough of the Open Inference Protocol
(``/v2/models/{name}/infer`` and ``.../ready``) to score the chaos app's
events, and switches between healthy and a fault *for a window of time*, which
neither MLServer nor the scripted fake endpoint can do. Every answer is
computed from the request (p = mean of the row, clipped), so outputs are
checkable.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import orjson
from aiohttp import web

Mode = Literal[
    "ok", "down", "stall", "500", "html502", "truncated", "invalid_json", "fewer", "echo"
]


class FaultServer:
    """An OIP server on 127.0.0.1 whose :attr:`mode` a test flips.

    ``down`` closes the listening socket (connections are refused, as when
    the process is killed); the other modes answer every request with that
    fault. ``echo`` answers 401 with the request's headers in the body, like a
    careless proxy, to check that no credential leaks.
    """

    def __init__(self) -> None:
        self.mode: Mode = "ok"
        self.missing: set[str] = set()
        """Model names this server says it does not have."""
        self.port = 0
        self.served = 0
        self.faulted = 0
        self.faults: dict[str, int] = {}
        """Requests answered with each fault."""
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FaultServer:
        app = web.Application()
        app.router.add_post("/v2/models/{name}/infer", self._infer)
        app.router.add_get("/v2/models/{name}/ready", self._ready)
        app.router.add_get("/v2/health/ready", self._ready)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        await self._listen()
        return self

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()
        self.port = self._runner.addresses[-1][1]

    async def set(self, mode: Mode) -> None:
        """Switch behaviour; ``down`` stops listening, leaving ``down`` listens again."""
        if mode == "down" and self._site is not None:
            site, self._site = self._site, None
            await site.stop()
        elif mode != "down" and self._site is None:
            await self._listen()
        self.mode = mode

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FaultServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _ready(self, request: web.Request) -> web.Response:
        if request.match_info.get("name", "") in self.missing:
            return web.json_response({"error": "Model not found"}, status=404)
        return web.json_response({"ready": True})

    async def _infer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        mode = self.mode
        if mode != "ok":
            self.faults[mode] = self.faults.get(mode, 0) + 1
        if mode == "down":
            # A request on a connection opened before the "kill": the process
            # is gone, so the connection drops without an answer.
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable()
        if mode == "stall":
            self.faulted += 1
            await asyncio.sleep(120)  # the client times out first (and cancels this)
        if mode == "500":
            self.faulted += 1
            return web.json_response({"error": "internal error"}, status=500)
        if mode == "html502":
            self.faulted += 1
            return web.Response(
                status=502,
                text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                content_type="text/html",
            )
        if mode == "echo":
            self.faulted += 1
            echoed = "; ".join(f"{k}: {v}" for k, v in request.headers.items())
            return web.Response(status=401, text=f"unauthorized request ({echoed})")
        request_json = orjson.loads(body)
        tensor = request_json["inputs"][0]
        rows, width = tensor["shape"][0], tensor["shape"][1]
        data = tensor["data"]
        probabilities: list[float] = []
        for r in range(rows):
            row = data[r * width : (r + 1) * width]
            p = min(1.0, max(0.0, sum(row) / width))
            probabilities += [1 - p, p]
        if mode == "fewer":
            self.faulted += 1
            rows = max(0, rows - 1)
            probabilities = probabilities[: 2 * rows]
        answer = {
            "model_name": request.match_info["name"],
            "outputs": [
                {
                    "name": "predict_proba",
                    "shape": [rows, 2],
                    "datatype": "FP64",
                    "data": probabilities,
                }
            ],
        }
        payload = orjson.dumps(answer)
        if mode == "truncated":
            self.faulted += 1
            return web.Response(body=payload[: len(payload) // 2], content_type="application/json")
        if mode == "invalid_json":
            self.faulted += 1
            return web.Response(body=b"{'outputs': nope", content_type="application/json")
        self.served += 1
        return web.Response(body=payload, content_type="application/json")
