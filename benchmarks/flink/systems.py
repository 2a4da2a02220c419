"""The two systems under test, started the same way: one process group each.

``run.py`` only needs a process group to meter, a log to show when something
fails, and a way to stop it; :class:`FlinkJob` and :func:`faust_worker` give
both systems that shape.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.flink.install import flink_python
from devtools import _process
from devtools.worker import FaustWorker

__all__ = ["FlinkJob", "Profiler", "faust_worker"]

JOB = Path(__file__).with_name("job.py")


class FlinkJob:
    """``job.py`` in the PyFlink virtualenv: a local mini-cluster running one job.

    Args:
        venv: the PyFlink virtualenv (``install.ensure_venv()``).
        jars: the folder of provider and connector jars (``install.ensure_jars()``).
        log_path: where the driver's output goes.
        **options: ``job.py`` options (``bootstrap``, ``source``, ``sink``,
            ``endpoint``, ``task``, ``in_flight``, ...).
    """

    def __init__(self, venv: Path, jars: Path, log_path: Path, **options: object) -> None:
        self.cmd = [str(flink_python(venv)), str(JOB), "--jars", str(jars)]
        for key, value in options.items():
            self.cmd += [f"--{key.replace('_', '-')}", str(value)]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pgid(self) -> int:
        """The process group: the driver and the JVM it launched."""
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120.0) -> FlinkJob:
        """Start the driver and wait until it says the job is submitted."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # bounded by time; one line per pass
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if not ready:
                continue
            line = self.proc.stdout.readline().decode(errors="replace")
            if line.startswith("FLINK_JOB_RUNNING="):
                # The JVM shares the driver's stdout: keep draining it so it never blocks.
                threading.Thread(target=self._drain, daemon=True).start()
                return self
            if not line:
                break  # the driver exited
        self.stop()
        raise RuntimeError(
            f"the Flink job did not start; see {self.log_path}:\n{_process.tail(self.log_path, 30)}"
        )

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.log_path.open("ab") as log:
            shutil.copyfileobj(self.proc.stdout, log)

    def stop(self) -> None:
        """Stop the driver and its JVM (SIGTERM, then SIGKILL)."""
        if self.proc is not None:
            _process.terminate_group(self.proc, timeout=15)


def faust_worker(workdir: Path, name: str, **settings: object) -> FaustWorker:
    """The faust-inference worker (``faust_app.py``); ``settings`` become its env vars."""
    env = {f"FLINK_BENCH_{k.upper()}": str(v) for k, v in settings.items() if k != "kafka_broker"}
    env["KAFKA_BROKER"] = str(settings["kafka_broker"])
    return FaustWorker("benchmarks.flink.faust_app", env, workdir, name, log_level="warn")


class Profiler:
    """py-spy sampling a process group's leader, collapsed stacks into ``path``.

    py-spy is a tool of the benchmark, not a dependency of the project:
    ``.venv/bin/pip install py-spy`` if it is missing.
    """

    def __init__(self, pid: int, path: Path, rate: int = 250) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
        self.path = path
        self.cmd = [
            spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(path),
            "--nonblocking",
            "--gil",  # only the thread holding the GIL: where Python CPU time goes
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start sampling."""
        with self.path.with_suffix(".log").open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=log)

    def stop(self) -> None:
        """Stop sampling; py-spy writes its file on SIGINT."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
