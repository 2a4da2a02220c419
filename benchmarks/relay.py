"""A TCP relay that counts the bytes each way: what "bytes on the wire" means here.

Sits between a client and a model server on 127.0.0.1 and copies bytes both
ways, counting them, whatever the protocol (HTTP/1.1 with JSON or binary
bodies, gzip, gRPC over HTTP/2): headers and framing included, TCP/IP
headers excluded. Used by ``benchmarks/wire.py`` and by the gzip test of the
gRPC wire format.

Example::

    async with CountingRelay("127.0.0.1", server_port) as relay:
        ...  # point the client at relay.port
        print(relay.sent, relay.received)
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

__all__ = ["CountingRelay"]

_CHUNK = 64 * 1024


class CountingRelay:
    """Relays connections to ``host:port``; counts ``sent`` (to the server) and ``received``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.sent = 0
        self.received = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def reset(self) -> None:
        """Start counting again from zero."""
        self.sent = self.received = 0

    async def __aenter__(self) -> CountingRelay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        # Abort the connections rather than cancel their tasks: a cancelled
        # handler of asyncio.start_server logs a traceback on Python 3.11.
        for writer in list(self._writers):
            writer.transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, "sent"), self._pipe(up_reader, writer, "received")
            )
        finally:
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)
            self._tasks.discard(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: str
    ) -> None:
        try:
            while data := await reader.read(_CHUNK):
                setattr(self, count, getattr(self, count) + len(data))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.write_eof()
