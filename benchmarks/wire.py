"""Wire formats of the Open Inference Protocol: bytes on the wire, events/s through Kafka.

    python benchmarks/wire.py [--repeat 3] [--events 3000] [--wide-events 600]

For a 256-float and a 4,096-float input (one event = one row), against a real
MLServer (a logistic regression per width, ``benchmarks/wire_model.py``) and
against the fake endpoint (the test double, no latency, in its own process):

1. bytes on the wire per request, both ways, measured by a TCP relay in
   front of the server (``benchmarks/relay.py``: headers and framing
   included), over 50 single-row requests, and the client's CPU time per
   request (``time.process_time``: encoding, the HTTP or gRPC stack,
   decoding; the relay's copying included, the same for every wire);
2. events/s of one Faust worker (``benchmarks/wire_app.py``) through the
   real broker: 32 requests in flight, batches of up to 16 events; median
   of ``--repeat`` interleaved runs, with min-max.

Wire formats: ``json`` (the default), ``json+gzip``, ``binary`` (the binary
tensor extension over REST: the fake endpoint speaks it, MLServer's REST
server does not) and ``grpc`` (MLServer's gRPC port; the fake endpoint's,
``--grpc``). Feature values are full-precision floats, as real features are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.relay import CountingRelay
from benchmarks.support import REPO, drain, rate, unique
from devtools.kafka import KafkaBroker
from devtools.mlserver import CACHE_DIR, MLServer, prepare_model
from devtools.worker import FaustWorker
from faust_inference import ModelRegistry

WIDTHS = (256, 4096)
WIRES: dict[str, dict[str, Any]] = {
    "json": {},
    "json+gzip": {"compression": "gzip"},
    "binary": {"binary": True},
    "grpc": {"protocol": "grpc"},
    "grpc+gzip": {"protocol": "grpc", "compression": "gzip"},
}
SUPPORTED = {
    "mlserver": ("json", "json+gzip", "grpc", "grpc+gzip"),
    "fake": ("json", "json+gzip", "binary", "grpc", "grpc+gzip"),
}
KAFKA_WIRES = {
    "mlserver": ("json", "json+gzip", "grpc"),
    "fake": ("json", "json+gzip", "binary", "grpc"),
}
BYTES_REQUESTS = 50


@contextlib.contextmanager
def fake_process() -> Iterator[tuple[str, str]]:
    """The fake endpoint in its own process (REST and gRPC URLs), keeping no request bodies."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.fake_endpoint", "--record-limit", "0",
         "--max-seconds", "3600", "--grpc"],
        cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        if not lines[1].startswith("FAKE_ENDPOINT_URL="):
            raise RuntimeError(f"fake endpoint did not start: {lines!r}")
        yield lines[1].split("=", 1)[1], lines[0].split("=", 1)[1]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@contextlib.contextmanager
def mlserver_wide() -> Iterator[MLServer]:
    """MLServer serving ``wide256`` and ``wide4096``."""
    script = REPO / "benchmarks" / "wire_model.py"
    models = Path(tempfile.mkdtemp(prefix="wire-models-"))
    for width in WIDTHS:
        trained = prepare_model(CACHE_DIR / "wire-models" / f"wide{width}", script)
        shutil.copytree(trained, models / f"wide{width}")
    server = MLServer(models)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(models, ignore_errors=True)


def model_kwargs(server: str, urls: dict[str, str], width: int, wire: str) -> dict[str, Any]:
    """``app.model`` keywords for one server, width and wire format."""
    options = WIRES[wire]
    endpoint = urls["grpc"] if options.get("protocol") == "grpc" else urls["rest"]
    remote = f"wide{width}" if server == "mlserver" else "bench"
    return {"provider": "kserve", "endpoint": endpoint, "remote_name": remote, **options}


def row(i: int, width: int) -> list[float]:
    """Full-precision features (``0.1`` would flatter JSON: 3 characters)."""
    return [((i * 7919 + j * 104729) % 1000003) / 1000003 for j in range(width)]


async def bytes_per_request(
    host_port: str, kwargs: dict[str, Any], width: int
) -> tuple[float, float, float]:
    """Bytes sent and received, and client CPU seconds, per single-row request."""
    host, port = host_port.rsplit(":", 1)
    async with CountingRelay(host, int(port)) as relay:
        scheme = "http://"
        relayed = {**kwargs, "endpoint": f"{scheme}127.0.0.1:{relay.port}"}
        registry = ModelRegistry()
        try:
            model = registry.register("m", batch_size=1, max_concurrency=1, **relayed)
            await model.predict(row(0, width))  # connect first: the handshake is not per request
            relay.reset()
            cpu = time.process_time()
            for i in range(BYTES_REQUESTS):
                await model.predict(row(i, width))
            cpu = time.process_time() - cpu
        finally:
            await registry.aclose()
        n = BYTES_REQUESTS
        return relay.sent / n, relay.received / n, cpu / n


def through_kafka(
    kafka: KafkaBroker, topic_in: str, n: int, kwargs: dict[str, Any], workdir: Path
) -> float:
    """Events/s of one worker over the ``n`` events already in ``topic_in``."""
    topic_out = unique("wire-out")
    kafka.create_topic(topic_out, partitions=1)
    model = {**kwargs, "max_concurrency": 32, "batch_size": 16, "batch_timeout": 0.005,
             "timeout": 30.0}  # fmt: skip
    env = {"BENCH_IN": topic_in, "BENCH_OUT": topic_out, "BENCH_APP_ID": unique("wire"),
           "KAFKA_BROKER": kafka.url, "BENCH_MODEL": orjson.dumps(model).decode()}  # fmt: skip
    worker = FaustWorker("benchmarks.wire_app", env, workdir, topic_in, log_level="warn")
    worker.start()
    try:
        stamps = asyncio.run(drain(kafka.bootstrap, topic_out, n, timeout=300))
    finally:
        worker.stop()
    if len(stamps) < n:
        raise RuntimeError(f"only {len(stamps)}/{n} events came out; see {worker.log_path}")
    return rate(stamps)


async def fill(bootstrap: str, topic: str, n: int, width: int) -> None:
    """``n`` events of ``width`` features; up to 4,096 floats, larger than ``fill_topic``'s."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, acks=1, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    try:
        for i in range(n):
            value = orjson.dumps({"id": i, "x": row(i, width)})
            await producer.send(topic, key=str(i).encode(), value=value)
        await producer.flush()
    finally:
        await producer.stop()


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=int, default=3000, help="events per run, 256 floats")
    parser.add_argument("--wide-events", type=int, default=600, help="events per run, 4,096")
    parser.add_argument("--skip-kafka", action="store_true", help="only the bytes table")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-wire-"))
    with KafkaBroker() as kafka, mlserver_wide() as ml, fake_process() as (fake_url, fake_grpc):
        servers = {
            "mlserver": {"rest": ml.url, "grpc": f"http://127.0.0.1:{ml.grpc_port}"},
            "fake": {"rest": fake_url, "grpc": fake_grpc},
        }
        print(f"Kafka {kafka.version}; MLServer {ml.url} (gRPC {ml.grpc_port}); fake {fake_url}; "
              f"logs in {workdir}", flush=True)  # fmt: skip
        sizes: dict[tuple[str, int, str], tuple[float, float, float]] = {}
        for server, urls in servers.items():
            for width in WIDTHS:
                for wire in SUPPORTED[server]:
                    kwargs = model_kwargs(server, urls, width, wire)
                    target = kwargs["endpoint"].removeprefix("http://")
                    sizes[server, width, wire] = asyncio.run(
                        bytes_per_request(target, kwargs, width)
                    )
        print("\nBytes on the wire per single-row request (TCP payload, headers included),")
        print("and the client's CPU per request\n")
        print("| server | floats | wire | sent | received | total | vs json | client CPU µs |")
        print("|---|---:|---|---:|---:|---:|---:|---:|")
        for (server, width, wire), (sent, got, cpu) in sizes.items():
            ratio = (sent + got) / sum(sizes[server, width, "json"][:2])
            print(f"| {server} | {width:,} | {wire} | {sent:,.0f} | {got:,.0f} | "
                  f"{sent + got:,.0f} | {ratio:.2f} | {cpu * 1e6:,.0f} |")  # fmt: skip
        if args.skip_kafka:
            return
        topics = {}
        for width in WIDTHS:
            n = args.events if width == 256 else args.wide_events
            topics[width] = (unique(f"wire-in-{width}"), n)
            kafka.create_topic(topics[width][0], partitions=4)
            asyncio.run(fill(kafka.bootstrap, topics[width][0], n, width))
        runs: dict[tuple[str, int, str], list[float]] = {}
        for _ in range(args.repeat):
            for server, urls in servers.items():
                for width in WIDTHS:
                    for wire in KAFKA_WIRES[server]:
                        topic, n = topics[width]
                        kwargs = model_kwargs(server, urls, width, wire)
                        value = through_kafka(kafka, topic, n, kwargs, workdir)
                        runs.setdefault((server, width, wire), []).append(value)
                        print(f"  {server} {width} {wire}: {value:,.0f}/s", flush=True)
    print(f"\nEvents/s through Kafka, one worker, 32 in flight, batches <= 16 "
          f"(median of {args.repeat}, min-max)\n")  # fmt: skip
    print("| server | floats | wire | events/s | vs json |")
    print("|---|---:|---|---:|---:|")
    for (server, width, wire), values in runs.items():
        base = statistics.median(runs[server, width, "json"])
        print(f"| {server} | {width:,} | {wire} | {spread(values)} | "
              f"{statistics.median(values) / base:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
