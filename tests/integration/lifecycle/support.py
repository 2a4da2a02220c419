"""Helpers for the lifecycle tests: the two-version app, its CLI, its logs."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.support import Collector, Worker, produce, scoring_topics

APP = "tests.integration.lifecycle.app"
FAUST = str(Path(sys.executable).parent / "faust")
REPO = Path(__file__).resolve().parents[3]
APPLIED = re.compile(r"applied routing revision (\d+) \((.*?)\) ([0-9.]+)s after it was written")
LOADED = re.compile(r"routing revision (\d+) \(.*?\), written [0-9.]+s ago")
"""A revision written before the worker started, applied as it starts."""


def lifecycle_env(kafka: Any, v1_url: str, **extra: str) -> dict[str, str]:
    return {**scoring_topics(kafka), "KAFKA_BROKER": kafka.url, "V1_URL": v1_url, **extra}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``faust -A <app> inference ARGS`` in a shell of its own (no worker in it)."""
    full = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [FAUST, "-A", APP, "inference", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=REPO,
        timeout=60,
        check=False,
    )


async def acli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, env, *args)


def applied(worker: Worker) -> list[tuple[int, str, float]]:
    """(revision, change, seconds after it was written) for each revision the worker applied."""
    text = worker.log_path.read_text(errors="replace")
    return [(int(m[1]), m[2], float(m[3])) for m in APPLIED.finditer(text)]


async def wait_applied(workers: list[Worker], revision: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout

    def has(w: Worker) -> bool:
        text = w.log_path.read_text(errors="replace")
        found = [int(m[1]) for m in APPLIED.finditer(text)]
        found += [int(m[1]) for m in LOADED.finditer(text)]
        return any(r >= revision for r in found)

    while not all(has(w) for w in workers):
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name}\n{w.log()}" for w in workers)
            raise AssertionError(f"revision {revision} not applied by every worker\n{logs}")
        for w in workers:
            w.assert_alive()
        await asyncio.sleep(0.2)


async def both_working(
    bootstrap: str, seen: Collector, env: dict[str, str], workers: list[Worker]
) -> None:
    """Feed warm-up events until every running worker has answered some (the group has settled).

    The running workers' own pids, not any two: after a restart, the stopped
    worker's answers are still in ``out``, and a new worker that has not yet
    joined must not count (events sent then would meet its rebalance).
    """
    out = seen.records[env["OUT_TOPIC"]]
    pids = {w.pid for w in workers}
    for round_ in range(40):
        warm = [{"id": f"warm{round_}-{i}", "x": [0.1 * (i % 10)] * 10} for i in range(40)]
        await produce(bootstrap, env["IN_TOPIC"], warm, key=lambda e: e["id"])
        await asyncio.sleep(1.0)
        if pids <= {r["pid"] for r in out}:
            return
        for w in workers:
            w.assert_alive()
    raise AssertionError("the two workers never both answered")


__all__ = [
    "APP",
    "Collector",
    "Worker",
    "acli",
    "applied",
    "both_working",
    "cli",
    "lifecycle_env",
    "produce",
    "wait_applied",
]
