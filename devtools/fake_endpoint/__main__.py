"""Command line: run the fake endpoint in its own process (for benchmarks).

Usage::

    python -m devtools.fake_endpoint --latency 0.02 [--port 0] [--dim 8] [--rate-limit-rps N]

With ``--grpc`` it also serves the Open Inference Protocol's ``ModelInfer``
over gRPC, announced first as ``FAKE_ENDPOINT_GRPC_URL=http://127.0.0.1:PORT``.

Prints ``FAKE_ENDPOINT_URL=http://127.0.0.1:PORT`` on one flushed line once it
accepts connections, serves until SIGINT/SIGTERM (or ``--max-seconds``, so a
forgotten process cannot live forever), then prints the stats as one JSON line.
A separate process keeps the fake off the event loop and the core of the code
being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import signal
import sys
from collections.abc import Callable, Sequence

import orjson

from devtools.fake_endpoint.config import EndpointConfig
from devtools.fake_endpoint.server import FakeEndpoint


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m devtools.fake_endpoint", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (keep loopback)")
    p.add_argument("--port", type=int, default=0, help="TCP port, 0 = pick a free one")
    p.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    p.add_argument("--jitter", type=float, default=0.0, help="extra random seconds, at most")
    p.add_argument("--slow-rate", type=float, default=0.0, help="fraction of slow answers")
    p.add_argument("--slow-latency", type=float, default=0.0, help="seconds of a slow answer")
    p.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 500")
    p.add_argument("--seed", type=int, default=0, help="seed of the error/jitter RNGs")
    p.add_argument("--rate-limit-rps", type=float, default=None, help="429 above this rate")
    p.add_argument("--max-batch", type=int, default=None, help="400 above this many rows")
    p.add_argument("--dim", type=int, default=8, help="embedding dimension")
    p.add_argument("--model", default="fake-model", help="model id reported")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="exit after this long")
    p.add_argument(
        "--record-limit", type=int, default=1000, help="recent requests kept (0 for big bodies)"
    )
    p.add_argument(
        "--grpc", action="store_true", help="also serve OIP ModelInfer over gRPC (needs grpcio)"
    )
    return p.parse_args(argv)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Use uvloop when it happens to be installed; it is not a dependency."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def serve(args: argparse.Namespace) -> dict[str, object]:
    """Serve until a signal or ``--max-seconds``; return the final stats dict."""
    config = EndpointConfig(
        latency=args.latency,
        slow_rate=args.slow_rate,
        slow_latency=args.slow_latency,
        jitter=args.jitter,
        error_rate=args.error_rate,
        seed=args.seed,
        rate_limit_rps=args.rate_limit_rps,
        max_batch=args.max_batch,
        dim=args.dim,
        model=args.model,
        record_limit=args.record_limit,
    )
    endpoint = FakeEndpoint(config)
    url = await endpoint.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    grpc_server = None
    if args.grpc:
        from devtools.fake_endpoint.grpc_server import start_grpc

        grpc_server, grpc_port = await start_grpc(endpoint, args.host)
        print(f"FAKE_ENDPOINT_GRPC_URL=http://{args.host}:{grpc_port}", flush=True)
    print(f"FAKE_ENDPOINT_URL={url}", flush=True)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.max_seconds)
    finally:
        stats = endpoint.stats.to_dict()
        if grpc_server is not None:
            await grpc_server.stop(None)
        await endpoint.stop()
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = parse_args(argv)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        stats = runner.run(serve(args))
    sys.stdout.write(orjson.dumps(stats).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
