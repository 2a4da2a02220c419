"""Process plumbing shared by the local-service launchers.

``devtools.kafka``, ``devtools.mlserver`` and ``devtools.embeddings`` each run
one server process for tests and examples, and each needs the same handful of
mechanics: free loopback ports, a lock so parallel test workers install a
service only once, a child that dies with its parent, a stop that leaves no
process behind, readable log tails for error messages, and a ``start`` command
that serves until Ctrl-C. They live here once so a fix (say, to how a process
group is reaped) reaches every launcher.

Like the launchers, this module is stdlib-only: they must run from any Python
3.11+, including a bare interpreter before the project's venv exists.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final, NoReturn, Self

LOOPBACK: Final = "127.0.0.1"
"""Interface every launcher binds: test servers are never reachable from outside."""

INSTALL_MARKER: Final = ".faust-inference-ready"
"""File that :func:`install_once` writes into a finished install."""

PR_SET_PDEATHSIG: Final = 1
"""Linux ``prctl`` option: signal to deliver when the forking thread dies."""

_PARENT_GONE_EXIT: Final = 70  # EX_SOFTWARE: the child found its parent already dead
_GROUP_EXIT_GRACE_S: Final = 5.0
_POLL_INTERVAL_S: Final = 0.5

# Runs in the child's own interpreter, then execs the real command: sets the
# parent-death signal (argv[2]) and closes the race in which the parent
# (argv[1]) died before prctl ran. Needs nothing but the stdlib.
_PARENT_DEATH_SHIM: Final = (
    "import ctypes, os, sys\n"
    f"ctypes.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, int(sys.argv[2]))\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    f"    os._exit({_PARENT_GONE_EXIT})\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


# -- ports -----------------------------------------------------------------


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Pick ``count`` distinct TCP ports that are free on ``host`` right now.

    Why: fixed ports collide between parallel test sessions and with a
    developer's own servers. All sockets stay bound until every port is
    chosen, so the kernel cannot hand out the same port twice. Another
    process may still take one before the server binds it; callers retry
    start-up on a bind failure.

    Args:
        count: How many ports.
        host: Interface to bind.

    Returns:
        The port numbers, all different.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


# -- install-once markers and locks ----------------------------------------


def install_once(target: Path, wanted: str, install: Callable[[Path], None]) -> Path:
    """Build ``target`` (e.g. a venv) with ``install`` unless it is complete.

    Why: concurrent callers (parallel test workers, a CI script plus a
    fixture) must not build the same venv twice, and an interrupted or
    outdated build must be redone rather than used. So a marker file
    (:data:`INSTALL_MARKER`) holding ``wanted`` is written into ``target``
    only after ``install`` returned; a missing or different marker means
    "rebuild". It is checked without a lock (the common case, one file read),
    then again under an exclusive lock next to ``target`` (another caller
    may have just finished).

    Args:
        target: Folder that ``install`` builds; may be wiped by it.
        wanted: Marker content describing the wanted build (e.g. its pins).
        install: Builds ``target`` from scratch; raising leaves no marker.

    Returns:
        ``target``.
    """
    marker = target / INSTALL_MARKER
    if _marker_matches(marker, wanted):
        return target
    with file_lock(target.parent / f"{target.name}.lock"):
        if _marker_matches(marker, wanted):  # another process finished meanwhile
            return target
        install(target)
        marker.write_text(wanted)
    return target


def _marker_matches(marker: Path, wanted: str) -> bool:
    try:
        return marker.read_text() == wanted
    except OSError:
        return False


@contextlib.contextmanager
def file_lock(
    path: Path,
    timeout: float | None = None,
    *,
    error: Callable[[str], Exception] = TimeoutError,
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the ``with`` block.

    Why: pytest-xdist workers, parallel CI steps or a CI script plus a
    fixture may all try to build the same cache at once; only one should.
    The lock is released by the kernel if the holder dies, so a crash never
    leaves a stale lock behind.

    Args:
        path: Lock file; it and its parent folder are created if missing.
        timeout: Seconds to wait for the lock, or ``None`` to wait as long as
            the holder needs.
        error: Exception type (or factory) raised with a message when the
            lock is not obtained within ``timeout``, so each launcher reports
            its own error type.

    Yields:
        Nothing; the lock is held inside the ``with`` block.

    Raises:
        Exception: ``error(message)`` when ``timeout`` runs out.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        if timeout is None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        msg = f"timed out after {timeout:.0f}s waiting for {path}"
                        raise error(msg) from None
                    time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# -- tying a child's life to ours ------------------------------------------


def parent_death_preexec(sig: signal.Signals) -> Callable[[], None] | None:
    """Build a ``preexec_fn`` that makes Linux send ``sig`` to the child when we die.

    Why: a crashed or SIGKILLed test run must not leave a server behind, and
    ``PR_SET_PDEATHSIG`` is the one mechanism that survives our own SIGKILL.
    The signal follows the *thread* that forks the child, so only use this
    from a long-lived thread (normally the main thread). ``prctl`` is looked
    up here, in the parent, so the forked child only makes the call.

    Args:
        sig: Signal the child receives when the forking thread dies.

    Returns:
        The ``preexec_fn``, or ``None`` off Linux (nothing to set up).
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent_pid = os.getpid()

    def setup() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl ran
            os._exit(_PARENT_GONE_EXIT)

    return setup


def parent_death_command(python: Path | str, sig: signal.Signals, argv: Sequence[str]) -> list[str]:
    """Wrap ``argv`` so it runs with a parent-death signal, without a ``preexec_fn``.

    Why: same guarantee as :func:`parent_death_preexec`, but set up by a tiny
    shim in the child's own (Linux) Python that then ``exec``s the command,
    so no Python code runs in the forked child before ``exec`` (unsafe when
    the parent has other threads that may hold locks). It costs one
    interpreter start, so it suits servers that are Python programs anyway.

    Args:
        python: Interpreter that runs the shim (e.g. the server's venv python).
        sig: Signal the child receives when the calling thread dies.
        argv: The real command; ``argv[0]`` must be a path to an executable.

    Returns:
        The command to pass to :class:`subprocess.Popen`.
    """
    shim = [str(python), "-c", _PARENT_DEATH_SHIM, str(os.getpid()), str(int(sig))]
    return [*shim, *argv]


# -- stopping --------------------------------------------------------------


def kill_group(pgid: int) -> None:
    """SIGKILL a process group, ignoring one that is already gone.

    Why: the last resort of every stop, and safe as a ``weakref.finalize``
    callback because it never raises for a vanished group.

    Args:
        pgid: Process-group id (the leader's pid for ``start_new_session``).
    """
    _signal_group(pgid, signal.SIGKILL)


def terminate_group(proc: subprocess.Popen[Any], timeout: float) -> bool:
    """Stop a process started with ``start_new_session=True`` and all its group.

    SIGTERM first, so the server shuts down cleanly (flushes, unloads models,
    stops its workers). After ``timeout`` seconds, or as soon as the leader
    has exited, whatever is left in the group (a stuck worker, say) is
    SIGKILLed until the group is empty (at most a few more seconds), so
    nothing outlives the server.

    Args:
        proc: The group leader.
        timeout: Seconds the leader gets to exit after SIGTERM.

    Returns:
        Whether the leader ignored SIGTERM for ``timeout`` seconds and had to
        be killed, for callers that report it.
    """
    pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
        forced = False
    except subprocess.TimeoutExpired:
        forced = True
    kill_group(pgid)
    proc.wait()
    deadline = time.monotonic() + _GROUP_EXIT_GRACE_S
    while _group_alive(pgid) and time.monotonic() < deadline:
        kill_group(pgid)
        time.sleep(0.05)
    return forced


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # PermissionError: some kernels answer EPERM for a group of zombies.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- logs ------------------------------------------------------------------


def read_lines(path: Path) -> list[str] | None:
    """Read a server log leniently, for error messages.

    Why: logs are read while (or after) a server failed, so they may be
    missing or hold invalid UTF-8; neither may hide the original error.

    Args:
        path: Log file.

    Returns:
        Its lines, or ``None`` if it cannot be read.
    """
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None


def tail(path: Path, lines: int) -> str:
    """Return the last ``lines`` lines of a log for an error message.

    Args:
        path: Log file.
        lines: How many trailing lines to keep.

    Returns:
        The tail, or a note that the file cannot be read.
    """
    text = read_lines(path)
    if text is None:
        return f"<{path} not readable>"
    return "\n".join(text[-lines:])


# -- the service shape and its command line --------------------------------


class Service:
    """Base of the launchers' server classes: ``with`` starts and always stops.

    Why a base class: every launcher exposes the same ``start``/``stop``
    lifecycle, which is what both the context manager and
    :func:`serve_until_signal` rely on.
    """

    def start(self) -> object:
        """Start the server and block until it is ready."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server; must be idempotent."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Shutdown(BaseException):
    """Raised from the signal handler to unwind into ``Service.stop``.

    A ``BaseException`` so that no ``except Exception`` on the way (in
    start-up retries, HTTP probes, ...) can swallow it.
    """


def serve_until_signal(
    service: Service,
    *,
    alive: Callable[[], bool],
    on_ready: Callable[[], None],
    on_death: Callable[[], None],
    on_signal: Callable[[], None] | None = None,
) -> int:
    """Run ``service`` until SIGINT/SIGTERM, for a launcher's ``start`` command.

    The first signal raises inside whatever runs (also a slow start-up, which
    then cleans up after itself) and unwinds into ``service.stop()``; later
    signals are ignored so they cannot interrupt that stop. Previous handlers
    are restored afterwards.

    Args:
        service: The server; started here and always stopped.
        alive: Whether the server process still runs.
        on_ready: Called once started, e.g. to print ``NAME_URL=...``.
        on_death: Called if the server dies by itself, before it is stopped.
        on_signal: Called when a signal arrived, before stopping.

    Returns:
        0 after a signal, 1 if the server died.

    Raises:
        Exception: Whatever ``service.start()`` raised (the service is
            stopped first).
    """
    stopping = False

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise _Shutdown

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        service.start()
        on_ready()
        while alive():
            time.sleep(_POLL_INTERVAL_S)
        on_death()
        return 1
    except _Shutdown:
        if on_signal is not None:
            on_signal()
        return 0
    finally:
        stopping = True
        service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# Local requests must never go through an HTTP(S)_PROXY from the environment.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_json(
    method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 10.0
) -> tuple[int, Any]:
    """One JSON request without a proxy; returns (status, decoded body), errors included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status: int = response.status
            return status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


class ServerProcess(Service):
    """A model server in a venv of ours: one process group, a log file, a free port.

    What the embeddings and LLM launchers share: start with a retry when the
    free port was taken between picking and binding, the log's tail in every
    error, and a stop that leaves no process behind. A subclass sets the
    attributes below in ``__init__`` and implements :meth:`_spawn` (start the
    process on ``self._port``) and :meth:`_wait_ready` (poll, then probe).
    """

    error: type[Exception] = RuntimeError
    """Raised, with the log's tail, when the server cannot start."""
    what = "server"

    _proc: subprocess.Popen[bytes] | None
    _log_path: Path | None
    _log_path_arg: Path | None
    _requested_port: int | None
    _port: int | None
    _host: str
    _startup_timeout: float
    _install: bool

    def _say(self, message: str) -> None:
        raise NotImplementedError

    def _spawn(self, model: Path) -> None:
        raise NotImplementedError

    def _wait_ready(self, started: float) -> None:
        raise NotImplementedError

    def _init_process(
        self,
        host: str,
        port: int | None,
        log_path: Path | None,
        startup_timeout: float,
        install: bool,
    ) -> None:
        """The state every launcher keeps; call from ``__init__``."""
        self._host = host
        self._requested_port = port
        self._port = None
        self._log_path_arg = log_path
        self._log_path = None
        self._startup_timeout = startup_timeout
        self._install = install
        self._proc = None

    @property
    def url(self) -> str:
        """Base URL ending in ``/v1``, usable as an OpenAI client's ``base_url``.

        Raises:
            Exception: :attr:`error`, if the server has not been started.
        """
        if self._port is None:
            raise self.error(f"{self.what} not started")
        return f"http://{self._host}:{self._port}/v1"

    @property
    def log_path(self) -> Path | None:
        """The server's log file, once started."""
        return self._log_path

    @property
    def pid(self) -> int | None:
        """Process id (and process-group id) of the server, while running."""
        return None if self._proc is None else self._proc.pid

    def poll(self) -> int | None:
        """Return the server's exit code, or ``None`` while it runs (or never ran)."""
        return None if self._proc is None else self._proc.poll()

    def _start_with(self, model: Path) -> None:
        """Spawn and wait; on a port lost to another process, retry twice on new ones."""
        if self._proc is not None:
            raise self.error(f"{self.what} already started")
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            self._spawn(model)
            try:
                self._wait_ready(started)
            except self.error:
                port_taken = "address already in use" in self._log_tail(200).lower()
                self.stop()
                if port_taken and attempt < attempts:
                    self._say("port was taken meanwhile; retrying on another one")
                    continue
                raise
            except BaseException:  # e.g. KeyboardInterrupt: leave nothing behind
                self.stop()
                raise
            self._say(f"ready at {self.url} in {time.monotonic() - started:.1f}s (pid {self.pid})")
            atexit.register(self.stop)
            return

    def serve(self, variable: str) -> int:
        """Run until SIGINT/SIGTERM, printing ``VARIABLE=<url>`` once ready; the exit code.

        What the launchers' ``start`` command does, so that shell scripts can
        read the URL from the first line.
        """
        try:
            return serve_until_signal(
                self,
                alive=lambda: self.poll() is None,
                on_ready=lambda: print(f"{variable}={self.url}", flush=True),
                on_death=lambda: self._say(
                    f"server exited unexpectedly with code {self.poll()}; log: {self.log_path}"
                ),
            )
        except self.error as exc:
            self._say(str(exc))
            return 1

    def _log_tail(self, lines: int = 40) -> str:
        return "" if self._log_path is None else tail(self._log_path, lines)

    def _fail(self, message: str) -> NoReturn:
        raise self.error(f"{message}\n--- last lines of {self._log_path} ---\n{self._log_tail()}")

    def stop(self) -> None:
        """Stop the server and everything in its process group; idempotent.

        SIGTERM to the group, up to 10 s, then SIGKILL for whatever is left
        (the server leads its own session), so no child survives.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        if terminate_group(proc, 10):
            self._say("server ignored SIGTERM for 10 s and was SIGKILLed")
