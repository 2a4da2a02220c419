"""Helpers for integration tests: real Faust worker processes and Kafka I/O."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[2]


def unique(prefix: str) -> str:
    """A fresh topic or group name, so tests never see each other's data."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Worker:
    """``faust -A <app> worker`` in its own process group, logging to a file."""

    def __init__(self, app: str, env: dict[str, str], workdir: Path, name: str = "worker") -> None:
        self.app = app
        self.env = env
        self.workdir = workdir
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        faust_cli = Path(sys.executable).parent / "faust"
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO)}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(faust_cli),
                "-A",
                self.app,
                "--datadir",
                str(self.workdir / f"{self.name}-data"),
                "worker",
                "-l",
                "info",
                "--without-web",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def assert_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")


async def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[dict[str, Any]],
    key: Callable[[dict[str, Any]], str],
) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    n = 0
    try:
        for value in values:
            await producer.send(topic, key=key(value).encode(), value=orjson.dumps(value))
            n += 1
        await producer.flush()
    finally:
        await producer.stop()
    return n


class Collector:
    """Reads topics from the beginning in the background, keeping every record."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self.records: dict[str, list[dict[str, Any]]] = {t: [] for t in topics}
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
            metadata_max_age_ms=1000,
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Collector:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                self.records[tp.topic].extend(orjson.loads(r.value) for r in records)

    async def wait_for(
        self, condition: Callable[[], bool], timeout: float, *, workers: Iterable[Worker] = ()
    ) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                logs = "\n\n".join(f"--- {w.name}\n{w.log()}" for w in workers)
                counts = {t: len(v) for t, v in self.records.items()}
                raise AssertionError(f"timed out after {timeout}s; records: {counts}\n{logs}")
            for w in workers:
                w.assert_alive()
            await asyncio.sleep(0.2)
