"""A Faust worker as a real process: what tests, the example and benchmarks run.

A worker in its own process (and process group) is what users run
(``faust -A app worker``), and the only way to test a crash for real: SIGKILL
takes down the worker and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["FaustWorker"]

REPO_ROOT = Path(__file__).resolve().parents[1]


class FaustWorker:
    """``faust -A <app> worker`` with its own data directory and log file.

    Example::

        worker = FaustWorker("examples.fraud_detection.app", {"KAFKA_BROKER": url}, tmp)
        worker.start()
        ...
        worker.stop()

    Args:
        app: the app's import path, as given to ``faust -A``.
        env: extra environment variables (the app reads its settings from them).
        workdir: where the data directory and ``<name>.log`` go.
        name: names the log file and the data directory.
        log_level: the worker's ``-l`` (``warn``, not ``warning``).
    """

    def __init__(
        self,
        app: str,
        env: Mapping[str, str],
        workdir: Path,
        name: str = "worker",
        *,
        log_level: str = "info",
    ) -> None:
        self.app = app
        self.env = dict(env)
        self.workdir = Path(workdir)
        self.name = name
        self.log_level = log_level
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FaustWorker:
        """Start the worker process (output appended to :attr:`log_path`)."""
        faust_cli = Path(sys.executable).parent / "faust"
        pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, **self.env, "PYTHONPATH": pythonpath}
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(faust_cli),
                    "-A",
                    self.app,
                    "--datadir",
                    str(self.workdir / f"{self.name}-data"),
                    "worker",
                    "-l",
                    self.log_level,
                    "--without-web",
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        """The worker's process ID, once started."""
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        """Whether the worker process is running."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the worker's process group and wait for it to exit."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop cleanly (SIGTERM: Faust commits and closes), SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the worker's output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def assert_alive(self) -> None:
        """Raise with the log's tail if the worker has exited."""
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise AssertionError(f"{self.name} is not running (exit {code}):\n{self.log()}")
