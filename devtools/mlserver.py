"""Run a real Seldon MLServer locally for examples, integration tests and CI.

MLServer pins versions (pydantic, fastapi, uvicorn, ...) that clash with this
project's own dependencies, so it lives in a separate virtualenv under
``<repo>/.cache/venv-mlserver``. This module is deliberately stdlib-only so it
can drive that venv from the project's venv (or any Python 3.11+) without
importing anything MLServer-related.

Usage::

    python -m devtools.mlserver setup            # venv + example model (CI warm-up)
    python -m devtools.mlserver start            # prints MLSERVER_URL=http://127.0.0.1:PORT

or from Python (e.g. a pytest fixture)::

    with MLServer(prepare_fraud_model(tmp_path)) as server:
        ...  # POST f"{server.url}/v2/models/fraud/infer"
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

try:
    from devtools import _process
except ImportError:  # run as a file (python devtools/mlserver.py), not with -m
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from devtools import _process

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cache"
VENV_DIR = CACHE_DIR / "venv-mlserver"
DEFAULT_MODELS_DIR = CACHE_DIR / "models"
TRAIN_SCRIPT = REPO_ROOT / "examples" / "fraud_detection" / "train.py"
HOST = _process.LOOPBACK
_EXC_LINE = re.compile(r"^[\w.]*(Error|Exception)\b.*:")

# uvloop>=0.22 breaks MLServer 1.7.1 model loading with "There is no current
# event loop in thread 'MainThread'" (SeldonIO/MLServer#2286).
# scikit-learn and joblib come with mlserver-sklearn.
REQUIREMENTS: tuple[str, ...] = (
    "mlserver==1.7.1",
    "mlserver-sklearn==1.7.1",
    "uvloop<0.22",
)

# Child-process environment defaults. OpenMP/BLAS thread pools spin on their
# barriers; on a 2-core machine shared with Kafka and the test runner that
# turns a ~1 ms scikit-learn predict into 15-40 ms, so the model runs
# single-threaded (MLServer already serves it in-process on its event loop).
_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


class MLServerError(RuntimeError):
    """MLServer could not be set up, failed to start, or died."""


def _venv_bin(venv: Path, name: str) -> Path:
    return venv / "bin" / name


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for processes run with the MLServer venv's Python.

    PYTHONPATH/PYTHONHOME from the caller (e.g. pointing at this project's
    sources or venv) would leak clashing packages into MLServer's
    interpreter, so they are dropped.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(_THREAD_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def ensure_venv(venv: Path = VENV_DIR) -> Path:
    """Create the MLServer virtualenv unless it is already complete.

    A marker file holding the requirement list is written only after a
    successful install, so an interrupted install (or a changed pin) is
    detected and redone from scratch instead of leaving a half-built venv
    that fails later in a confusing way. A file lock serialises concurrent
    callers (e.g. parallel test workers). When the marker matches this is a
    single file read.

    Args:
        venv: Where to create the virtualenv.

    Returns:
        The virtualenv directory.

    Raises:
        MLServerError: If creating the venv or installing into it fails.
    """
    return _process.install_once(venv, "\n".join(REQUIREMENTS) + "\n", _install)


def _install(venv: Path) -> None:
    _log(f"creating {venv} with {' '.join(REQUIREMENTS)} (~1-2 min, ~530 MB)")
    started = time.monotonic()
    # --clear: wipe a half-built venv left by an interrupted install.
    _run([sys.executable, "-m", "venv", "--clear", str(venv)], "venv creation")
    _run(
        [
            str(_venv_bin(venv, "python")),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            *REQUIREMENTS,
        ],
        "pip install",
    )
    _log(f"venv ready in {time.monotonic() - started:.0f}s")


def prepare_fraud_model(dest: Path = DEFAULT_MODELS_DIR, *, venv: Path | None = None) -> Path:
    """Train the example fraud model into ``dest/fraud`` unless it is current.

    ``settings.json`` is not written here: ports are only known at
    ``MLServer.start``.

    Args:
        dest: Model repository root (MLServer's ``<folder>``).
        venv: MLServer virtualenv; created with ``ensure_venv`` if needed.

    Returns:
        ``dest``, ready to pass to ``MLServer``.

    Raises:
        MLServerError: If the venv cannot be built or training fails.
    """
    prepare_model(dest / "fraud", TRAIN_SCRIPT, venv=venv)
    return dest


def prepare_model(
    model_dir: Path,
    train_script: Path,
    *,
    sources: Sequence[Path] = (),
    venv: Path | None = None,
) -> Path:
    """Run ``train_script --out model_dir`` with the MLServer venv's Python, unless current.

    The script must be inside the repository: it runs as a module from the
    repository's root (``python -m examples.fraud_detection.train``).

    Training runs with the MLServer venv's Python because a joblib pickle is
    only reliably loadable by the scikit-learn version that wrote it. The
    model is retrained when it is missing or older than the venv marker
    (new scikit-learn), than ``train_script`` or than any of ``sources``
    (changed data or model code).

    Example::

        prepare_model(CACHE_DIR / "example-models" / "shop" / "ranker",
                      REPO_ROOT / "examples" / "personalization" / "train.py")

    Args:
        model_dir: The model folder the script writes (``model-settings.json``
            and ``model.joblib``).
        train_script: A script taking ``--out DIR``.
        sources: More files whose change makes the model stale.
        venv: MLServer virtualenv; created with ``ensure_venv`` if needed.

    Returns:
        ``model_dir``.

    Raises:
        MLServerError: If the venv cannot be built or training fails.
    """
    venv = ensure_venv(venv or VENV_DIR)
    model = model_dir / "model.joblib"
    if (model_dir / "model-settings.json").is_file() and model.is_file():
        mtime = model.stat().st_mtime
        deps = [venv / _process.INSTALL_MARKER, train_script, *sources]
        if all(mtime >= d.stat().st_mtime for d in deps if d.exists()):
            return model_dir
    _log(f"training {train_script} into {model_dir}")
    # As a module from the repository root, so that the script can import the
    # repository's packages (its example's shared code, this module).
    module = ".".join(train_script.resolve().relative_to(REPO_ROOT).with_suffix("").parts)
    _run(
        [str(_venv_bin(venv, "python")), "-m", module, "--out", str(model_dir.resolve())],
        f"training with {train_script.name}",
        env=_child_env(),
        cwd=REPO_ROOT,
    )
    return model_dir


def write_model_folder(
    out: Path,
    settings: Mapping[str, Any],
    save_model: Callable[[Path], object],
    extra_files: Sequence[Path] = (),
) -> None:
    """Write an MLServer model folder: the model, ``model-settings.json``, extra files.

    Each file is written under a temporary name and renamed, the model last, so an
    interrupted training never leaves a folder that ``prepare_model`` takes as
    current. Called by the examples' ``train.py`` scripts, in MLServer's venv.

    Example::

        write_model_folder(out, MODEL_SETTINGS, lambda path: joblib.dump(model, path))

    Args:
        out: The model folder (created if missing).
        settings: The content of ``model-settings.json``.
        save_model: Writes the model to the path it is given (``model.joblib``).
        extra_files: Copied into the folder, such as a custom runtime's module.
    """
    out.mkdir(parents=True, exist_ok=True)
    writers: list[tuple[str, Callable[[Path], object]]] = [
        (f.name, functools.partial(shutil.copyfile, f)) for f in extra_files
    ]
    writers.append(("model-settings.json", lambda p: p.write_text(json.dumps(settings, indent=2))))
    writers.append(("model.joblib", save_model))
    for name, write in writers:
        tmp = out / f"{name}.tmp"
        write(tmp)
        os.replace(tmp, out / name)


def _run(
    cmd: list[str], what: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> None:
    """Run a setup command, keeping stdout clean for ``MLSERVER_URL=``."""
    try:
        subprocess.run(cmd, check=True, stdout=sys.stderr, env=env, cwd=cwd)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise MLServerError(f"{what} failed: {exc}") from exc


def _log(msg: str) -> None:
    print(f"[mlserver] {msg}", file=sys.stderr, flush=True)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 60) -> str:
    """Last lines of the log, led by its last exception line.

    A failed model load leaves a long traceback followed by a clean shutdown,
    so the root cause can scroll out of a short tail; repeating the last
    ``SomethingError: ...`` line first keeps it visible in test output.
    """
    all_lines = _process.read_lines(path)
    if all_lines is None:
        return "<no log>"
    errors = [ln for ln in all_lines if _EXC_LINE.match(ln)]
    head = f"last error: {errors[-1]}\n" if errors else ""
    return head + "\n".join(all_lines[-lines:])


class MLServer(_process.Service):
    """An MLServer subprocess serving every model under ``models_dir``.

    Ports are picked at ``start`` so parallel test sessions and a developer's
    own server never collide. The process runs in its own process group so
    ``stop`` can take down MLServer *and* any inference-pool workers it
    forked. ``parallel_workers`` is 0 by default (model in-process): it
    starts faster (~4 s vs ~6 s) and, for a ~1 ms model on 2 cores, halves
    single-request latency versus a worker pool behind IPC; throughput under
    load is within noise of ``parallel_workers=2``.

    Args:
        models_dir: MLServer model repository root; must be writable
            (``settings.json`` and the log are written there).
        venv: MLServer virtualenv (default ``.cache/venv-mlserver``, created
            on ``start`` if missing).
        startup_timeout: Seconds to wait for the server and all models to be
            ready before giving up.
        log_path: Where MLServer's stdout/stderr go (default
            ``models_dir/mlserver.log``, truncated on each start).
        parallel_workers: MLServer ``parallel_workers`` setting.
        extra_settings: Additional ``settings.json`` keys (override ours).
        env: Extra environment variables for the server process.
    """

    def __init__(
        self,
        models_dir: Path,
        *,
        venv: Path | None = None,
        startup_timeout: float = 90.0,
        log_path: Path | None = None,
        parallel_workers: int = 0,
        extra_settings: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.models_dir = Path(models_dir).resolve()
        self.venv = venv or VENV_DIR
        self.startup_timeout = startup_timeout
        self.log_path = log_path or self.models_dir / "mlserver.log"
        self.parallel_workers = parallel_workers
        self.extra_settings = dict(extra_settings or {})
        self.env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._ports: tuple[int, int, int] | None = None

    # -- properties -----------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the V2 REST API, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def http_port(self) -> int:
        """REST port (raises if not started)."""
        return self._require_ports()[0]

    @property
    def grpc_port(self) -> int:
        """Port of the gRPC server (raises if not started)."""
        return self._require_ports()[1]

    @property
    def metrics_port(self) -> int:
        """Reserved metrics port; the metrics server itself is disabled."""
        return self._require_ports()[2]

    @property
    def pid(self) -> int | None:
        """PID (= process-group id) of the server, or None when stopped."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def model_names(self) -> list[str]:
        """Names of the models MLServer will load from ``models_dir``.

        MLServer scans the folder recursively for ``model-settings.json``; a
        model without a ``name`` is named after its folder.
        """
        names: list[str] = []
        for settings_file in sorted(self.models_dir.rglob("model-settings.json")):
            try:
                data = json.loads(settings_file.read_text())
            except (OSError, ValueError) as exc:
                raise MLServerError(f"unreadable {settings_file}: {exc}") from exc
            name = data.get("name") if isinstance(data, dict) else None
            names.append(str(name) if name else settings_file.parent.name)
        return names

    # -- lifecycle ------------------------------------------------------

    def start(self) -> None:
        """Start MLServer and block until it and every model are ready.

        Raises:
            MLServerError: On a second start, if there is no model, or if the
                server exits or is not ready within ``startup_timeout``; the
                message carries the tail of the server log.
        """
        if self._proc is not None:
            raise MLServerError("MLServer already started")
        models = self.model_names()
        if not models:
            raise MLServerError(f"no model-settings.json under {self.models_dir}")
        ensure_venv(self.venv)
        for attempt in range(3):
            try:
                self._spawn()
                self._wait_ready(models)
                return
            except MLServerError as exc:
                log = _tail(self.log_path, 200).lower()
                self.stop()
                port_clash = "address already in use" in log or "failed to bind" in log
                if port_clash and attempt < 2:
                    _log("port taken before MLServer bound it; retrying with new ports")
                    continue
                raise exc
            except BaseException:  # KeyboardInterrupt etc.: never leak the server
                self.stop()
                raise

    def _spawn(self) -> None:
        http_port, grpc_port, metrics_port = _process.free_ports(3, HOST)
        self._ports = (http_port, grpc_port, metrics_port)
        settings: dict[str, Any] = {
            "debug": False,  # True enables per-request access logs and DEBUG logging
            "host": HOST,
            "http_port": http_port,
            "grpc_port": grpc_port,
            "metrics_port": metrics_port,
            "metrics_endpoint": None,  # no separate Prometheus server to manage
            "parallel_workers": self.parallel_workers,
            "load_models_at_startup": True,
        }
        settings.update(self.extra_settings)
        (self.models_dir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("wb")
        # SIGTERM to the server if the thread that started it dies (even by
        # SIGKILL), so a killed test run or example leaves no server behind.
        command = _process.parent_death_command(
            _venv_bin(self.venv, "python"),
            signal.SIGTERM,
            [str(_venv_bin(self.venv, "mlserver")), "start", str(self.models_dir)],
        )
        self._proc = subprocess.Popen(
            command,
            cwd=self.models_dir,  # MLServer drops .envs/.metrics dirs into its cwd
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=_child_env(self.env),
            start_new_session=True,  # own process group: stop() kills workers too
        )
        # Kill the group even if the owner forgets stop() (interpreter exit).
        self._finalizer = weakref.finalize(self, _process.kill_group, self._proc.pid)

    def _wait_ready(self, models: list[str]) -> None:
        assert self._proc is not None
        urls = [f"{self.url}/v2/health/ready"]
        urls += [f"{self.url}/v2/models/{m}/ready" for m in models]
        deadline = time.monotonic() + self.startup_timeout
        pending = list(urls)
        while pending:
            code = self._proc.poll()
            if code is not None:
                raise MLServerError(
                    f"MLServer exited with code {code} during start-up; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                raise MLServerError(
                    f"MLServer not ready after {self.startup_timeout:g}s "
                    f"(waiting for {pending}); log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if _http_ok(pending[0]):
                pending.pop(0)
            else:
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server: SIGTERM the group, SIGKILL after 10 s.

        MLServer shuts down gracefully on SIGTERM (unloads models, stops
        workers). Whatever is still in the process group afterwards, such as
        a stuck worker, is SIGKILLed so nothing outlives the server.
        Idempotent.
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            _process.terminate_group(proc, 10)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _require_ports(self) -> tuple[int, int, int]:
        if self._ports is None:
            raise MLServerError("MLServer not started")
        return self._ports


def training_command(train: Callable[[Path], object], argv: Sequence[str] | None = None) -> None:
    """The command line that ``prepare_model`` runs: ``--out DIR``, then ``train(DIR)``.

    Example (the end of a ``train.py``)::

        if __name__ == "__main__":
            training_command(train)
    """
    parser = argparse.ArgumentParser(description="Train a model into an MLServer model folder.")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    train(parser.parse_args(argv).out)


def copy_models(dest: Path, *model_dirs: Path) -> Path:
    """Copy model folders into ``dest`` and return it, ready for ``MLServer(dest)``.

    MLServer writes ``settings.json`` and its log into the folder it serves: a test
    serves a copy, so that it never races an example serving the trained original.

    Example::

        with MLServer(copy_models(tmp_path, prepare_ranker() / "ranker")) as server: ...
    """
    for model_dir in model_dirs:
        shutil.copytree(model_dir, dest / model_dir.name)
    return dest


def run_example(
    app: str,
    models: Path,
    topics: Sequence[str],
    env: Callable[[str, str], Mapping[str, str]],
    scenario: Callable[[Any], int],
) -> int:
    """Run an example's ``scenario`` against Kafka, MLServer and a worker of its ``app``.

    What every example's ``run.py`` does around its own part: start a Kafka broker
    and MLServer serving ``models``, create ``topics`` (4 partitions each), start
    ``faust -A <app> worker``, call ``scenario(kafka)``, and stop the worker (before
    the broker, so it commits on the way out), MLServer and Kafka, also on Ctrl-C or
    SIGTERM. The Kafka jars and the MLServer venv are installed on first use.

    Example::

        run_example("examples.personalization.app", models, ["clicks", ...],
                    lambda kafka, model: {"KAFKA_BROKER": kafka, "SHOP_MODEL_URL": model},
                    lambda kafka: asyncio.run(my_scenario(kafka)))

    Args:
        app: The app's import path, as given to ``faust -A``.
        models: MLServer's model repository (trained already).
        topics: Created before the worker starts.
        env: The worker's settings from Kafka's URL and MLServer's.
        scenario: Takes the ``KafkaBroker``; returns the exit code.

    Returns:
        The scenario's exit code, or 130 when interrupted.
    """
    import tempfile

    from devtools.kafka import KafkaBroker
    from devtools.worker import FaustWorker

    workdir = Path(tempfile.mkdtemp(prefix=f"{app.rsplit('.', 2)[-2]}-"))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with KafkaBroker() as kafka, MLServer(models) as server:
        print(f"[run] Kafka at {kafka.bootstrap}, MLServer at {server.url}", flush=True)
        for topic in topics:
            kafka.create_topic(topic, partitions=4)
        worker = FaustWorker(app, env(kafka.url, server.url), workdir, log_level="warn")
        worker.start()
        print(f"[run] worker started (pid {worker.pid}, log {worker.log_path})", flush=True)
        try:
            return scenario(kafka)
        except KeyboardInterrupt:
            print("[run] interrupted", flush=True)
            return 130
        finally:
            worker.stop()
            print("[run] stopped the worker; stopping MLServer and Kafka", flush=True)


# -- CLI ----------------------------------------------------------------


def _serve(models_dir: Path, timeout: float) -> int:
    server = MLServer(models_dir, startup_timeout=timeout)

    def ready() -> None:
        print(f"MLSERVER_URL={server.url}", flush=True)
        _log(f"serving {server.model_names()} (pid {server.pid}, log {server.log_path})")

    def died() -> None:
        _log(f"MLServer died unexpectedly; log {server.log_path}:\n{_tail(server.log_path)}")

    return _process.serve_until_signal(
        server,
        alive=lambda: server.running,
        on_ready=ready,
        on_death=died,
        on_signal=lambda: _log("stopping"),
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``setup`` or ``start``."""
    parser = argparse.ArgumentParser(prog="python -m devtools.mlserver", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("setup", "create the MLServer venv and train the example model"),
        ("start", "setup, then serve until SIGINT/SIGTERM; prints MLSERVER_URL=..."),
    ):
        cmd = sub.add_parser(name, help=help_)
        cmd.add_argument(
            "--models",
            type=Path,
            default=DEFAULT_MODELS_DIR,
            help=f"model repository (default {DEFAULT_MODELS_DIR})",
        )
    sub.choices["start"].add_argument(
        "--timeout", type=float, default=90.0, help="start-up timeout in seconds"
    )
    args = parser.parse_args(argv)
    try:
        models_dir = prepare_fraud_model(args.models)
        if args.command == "setup":
            print(f"MLSERVER_MODELS={models_dir.resolve()}", flush=True)
            return 0
        return _serve(models_dir, args.timeout)
    except MLServerError as exc:
        _log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
