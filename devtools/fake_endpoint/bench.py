"""Measure the fake endpoint's own throughput (a bounded script, not a test).

Usage::

    python -m devtools.fake_endpoint.bench [--requests 2000] [--concurrency 50] [--latency 0.02]

Starts the CLI in a subprocess, fires the requests from this process with an
aiohttp client, prints requests/s and the server's stats, then stops the
subprocess. With 50 in flight and 20 ms latency the ceiling is 2,500 req/s,
and the fake must reach >= 2,000 so it is never what a benchmark measures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

REPO_ROOT = Path(__file__).resolve().parents[2]
PAYLOADS: dict[str, tuple[str, object]] = {
    "chat": (
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    ),
    "oip": (
        "/v2/models/m/infer",
        {"inputs": [{"name": "x", "shape": [4, 3], "datatype": "FP64", "data": [0.5] * 12}]},
    ),
    "predict": ("/predict", {"inputs": [1.0, 2.0, 3.0, 4.0]}),
}


def start_server(latency: float, timeout: float = 15.0) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m devtools.fake_endpoint`` and wait for its URL line.

    Returns:
        The process and its base URL.

    Raises:
        RuntimeError: If the URL line does not appear within ``timeout`` seconds.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "devtools.fake_endpoint", "--latency", str(latency)]
    cmd += ["--max-seconds", "300"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:  # bounded: one line per iteration, EOF ends it
        line = proc.stdout.readline()
        if line.startswith("FAKE_ENDPOINT_URL="):
            return proc, line.split("=", 1)[1].strip()
        if not line:
            break
    proc.kill()
    raise RuntimeError("fake endpoint did not report its URL")


def stop_server(proc: subprocess.Popen[str]) -> str:
    """SIGTERM the server and return its final stats line (kill after 10 s)."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out.strip()


async def fire(
    url: str, route: str, total: int, concurrency: int, server_pid: int | None = None
) -> tuple[float, float]:
    """Send ``total`` requests, ``concurrency`` at a time, over warmed connections.

    Returns:
        Requests/s, and the server's CPU seconds during the timed part (0.0
        without ``server_pid``).
    """
    path, payload = PAYLOADS[route]
    body = orjson.dumps(payload)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> None:
            async with session.post(url + path, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")

        # Open all connections first so the timed part measures serving, not connecting.
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(concurrency))), 60)
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one()

        cpu_before = server_cpu_seconds(server_pid) if server_pid else 0.0
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 120)
        elapsed = time.perf_counter() - started
        cpu = server_cpu_seconds(server_pid) - cpu_before if server_pid else 0.0
        return total / elapsed, cpu


def server_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid``; 0.0 where /proc is missing.

    The server's CPU per request is the load-independent number: end-to-end
    req/s on a shared 2-core box also depends on the client and on neighbours.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    """Run the measurement (``--repeat`` rounds on one server) and print the results."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--latency", type=float, default=0.02)
    p.add_argument("--route", choices=sorted(PAYLOADS), default="chat")
    p.add_argument("--repeat", type=int, default=1, help="rounds, 1..20")
    args = p.parse_args()
    ceiling = args.concurrency / args.latency if args.latency else float("inf")
    proc, url = start_server(args.latency)
    results: list[float] = []
    try:
        for _ in range(max(1, min(args.repeat, 20))):
            rps, cpu = asyncio.run(fire(url, args.route, args.requests, args.concurrency, proc.pid))
            per_request_us = 1e6 * cpu / args.requests
            busy = cpu * rps / args.requests
            results.append(rps)
            print(
                f"route={args.route} requests={args.requests} concurrency={args.concurrency} "
                f"latency={args.latency}s -> {rps:.0f} req/s (ceiling {ceiling:.0f}); "
                f"server CPU {per_request_us:.0f} us/request, {busy:.0%} of a core; "
                f"load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    finally:
        stats = stop_server(proc)
    print(f"best {max(results):.0f} req/s, median {sorted(results)[len(results) // 2]:.0f} req/s")
    print(f"server stats: {stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
