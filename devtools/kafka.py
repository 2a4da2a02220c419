"""A real single-node Apache Kafka broker for tests, examples and benchmarks.

Why this exists: faust-inference is a Faust library, and the behaviour that
matters (consumer groups, rebalances, offset commits, partition assignment)
is only trustworthy against a real broker. The release tarballs live on
Apache archive hosts that our machines cannot reach, but Maven Central is
reachable, and the broker is just a set of jars. So:

* :func:`ensure_jars` asks Maven (``devtools/kafka-pom.xml``) to copy the
  ``kafka_2.13`` artifact and its transitive dependencies into
  ``<repo>/.cache/kafka-<version>/libs`` once, and reuses that folder.
* :class:`KafkaBroker` runs it as a single KRaft node (combined broker and
  controller, no ZooKeeper) on free loopback ports in a throw-away directory,
  waits until it really answers Metadata requests, and stops it by PID.
* :func:`create_topic` / :func:`wait_until_ready` speak the Kafka wire
  protocol directly over a socket, so they need neither a JVM start (seconds
  per call) nor aiokafka.

The module is stdlib-only on purpose: it must run from any Python 3.11+
(CI scripts, a bare interpreter before the venv exists, benchmark drivers).
It needs ``java`` (17+) on PATH, and ``mvn`` only while the cache is cold.

Command line (from the repository root, or ``python devtools/kafka.py``)::

    python -m devtools.kafka fetch [--version V]   # pre-warm the jar cache
    python -m devtools.kafka start [--version V] [--port P] [--keep-workdir]

``start`` prints ``KAFKA_BOOTSTRAP=127.0.0.1:PORT`` on one line of stdout and
keeps the broker up until SIGINT/SIGTERM, then stops it cleanly.

``<repo>/.cache/kafka-<version>/`` (git-ignored) holds ``libs/`` (the jars),
``libs.complete`` (fetch marker), ``formatted-<hash>/`` (a pre-formatted
KRaft log dir) and ``broker-<hash>.jsa`` (JVM class-data-sharing archive).
Deleting the folder is always safe; it is rebuilt on the next start.

The default Kafka version is ``3.9.1``, or ``$FAUST_INFERENCE_KAFKA_VERSION``
when that is set. 4.x versions work too (same main classes).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Final, Self

try:
    from devtools import _process
except ImportError:  # run as a file (python devtools/kafka.py), not with -m
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from devtools import _process

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "BROKER_MAIN_CLASS",
    "DEFAULT_VERSION",
    "STORAGE_TOOL_CLASS",
    "VERSION_ENV",
    "KafkaBroker",
    "KafkaError",
    "create_topic",
    "default_version",
    "ensure_jars",
    "main",
    "topic_partitions",
    "wait_until_ready",
]

DEFAULT_VERSION: Final = "3.9.1"
"""Kafka version used when neither an argument nor the env var says."""

VERSION_ENV: Final = "FAUST_INFERENCE_KAFKA_VERSION"
"""Environment variable that overrides :data:`DEFAULT_VERSION`."""

BROKER_MAIN_CLASS: Final = "kafka.Kafka"
"""Broker entry point; in ``kafka_2.13-<v>.jar`` for both 3.9 and 4.x."""

STORAGE_TOOL_CLASS: Final = "kafka.tools.StorageTool"
"""KRaft log-dir formatter; also in ``kafka_2.13-<v>.jar`` in 3.9 and 4.x."""

_DEVTOOLS_DIR: Final = Path(__file__).resolve().parent
_REPO_ROOT: Final = _DEVTOOLS_DIR.parent
_POM: Final = _DEVTOOLS_DIR / "kafka-pom.xml"
_HOST: Final = _process.LOOPBACK
_VERSION_RE: Final = re.compile(r"^\d+\.\d+\.\d+(?:[.-][A-Za-z0-9]+)*$")
_MARKER: Final = "libs.complete"
_ANSI_RE: Final = re.compile(r"\x1b\[[0-9;]*m")  # Debian's mvn colours even with -B
_FETCH_TIMEOUT_S: Final = 900.0
_FORMAT_TIMEOUT_S: Final = 120.0
_PORT_RETRIES: Final = 3
_CDS_DUMP_GRACE_S: Final = 30.0
_CLIENT_ID: Final = b"faust-inference-devtools"

# Kafka API keys and error codes used by the tiny protocol client below.
_API_METADATA: Final = 3
_API_FIND_COORDINATOR: Final = 10
_API_VERSIONS: Final = 18
_API_CREATE_TOPICS: Final = 19
_ERR_NONE: Final = 0
_ERR_TOPIC_EXISTS: Final = 36
# Retriable while the controller/partitions settle right after creation.
_ERR_RETRIABLE: Final = frozenset({3, 5, 6, 7, 9, 13, 14, 15, 41})


class KafkaError(RuntimeError):
    """Raised when fetching, starting, stopping or talking to Kafka fails."""


def default_version() -> str:
    """Return the Kafka version to use when the caller names none.

    Returns:
        ``$FAUST_INFERENCE_KAFKA_VERSION`` if set and non-empty, else
        :data:`DEFAULT_VERSION`. An env var (rather than a config file) lets
        CI run the same test suite against another Kafka line unchanged.
    """
    return os.environ.get(VERSION_ENV, "").strip() or DEFAULT_VERSION


def _check_version(version: str) -> str:
    """Validate a version string before it becomes part of a path/argv.

    Args:
        version: A Maven version such as ``3.9.1`` or ``4.1.1``.

    Returns:
        The same version.

    Raises:
        KafkaError: If it does not look like a plain release version.
    """
    if not _VERSION_RE.match(version):
        msg = f"not a Kafka version: {version!r}"
        raise KafkaError(msg)
    return version


def _errors(path: Path, limit: int = 30) -> str:
    """Return the ERROR/FATAL lines of a broker log, each with its cause.

    Why: a failed broker logs its real reason (say a bind failure) early and
    then hundreds of shutdown lines, so a plain tail hides it.

    Args:
        path: Broker log file.
        limit: Maximum number of lines returned.

    Returns:
        The matching lines plus the two lines after each (the exception).
    """
    lines = _process.read_lines(path)
    if lines is None:
        return f"<{path} not readable>"
    picked: list[str] = []
    for index, line in enumerate(lines):
        if "] ERROR " in line or "] FATAL " in line:
            picked.extend(lines[index : index + 3])
        if len(picked) >= limit:
            break
    return "\n".join(picked[:limit]) or "<none>"


# --------------------------------------------------------------------------
# Jar cache
# --------------------------------------------------------------------------


def ensure_jars(version: str | None = None, *, cache_dir: Path | None = None) -> Path:
    """Make sure the broker jars for ``version`` are cached, and locate them.

    Runs ``mvn dependency:copy-dependencies`` on ``devtools/kafka-pom.xml``
    only when the cache has no success marker, so repeated calls are cheap.
    Maven downloads into a temporary sibling folder that is renamed into
    place only after it succeeded, so an interrupted fetch never leaves a
    half-filled ``libs`` folder that looks valid.

    Args:
        version: Kafka version (``None``: :func:`default_version`).
        cache_dir: Cache root; defaults to ``<repo>/.cache`` (git-ignored).

    Returns:
        The folder holding every jar (``<cache>/kafka-<version>/libs``), for
        a ``<folder>/*`` Java class path.

    Raises:
        KafkaError: If Maven is missing, fails, or the broker jar is absent.
    """
    version = _check_version(version or default_version())
    root = (cache_dir or _REPO_ROOT / ".cache") / f"kafka-{version}"
    libs = root / "libs"
    marker = root / _MARKER
    if marker.is_file() and libs.is_dir():
        return libs
    # Parallel test workers or CI steps may all get here at once; one runs Maven.
    lock = root.parent / f"kafka-{version}.lock"
    with _process.file_lock(lock, _FETCH_TIMEOUT_S, error=KafkaError):
        if marker.is_file() and libs.is_dir():  # another process fetched it
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            msg = "Maven ('mvn') is not on PATH; it is needed to fetch Kafka jars"
            raise KafkaError(msg)
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="libs.tmp-", dir=root))
        try:
            cmd = [
                mvn,
                "-q",
                "-B",
                "-Dstyle.color=never",
                "-f",
                str(_POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                f"-Dkafka.version={version}",
            ]
            try:
                proc = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    timeout=_FETCH_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                msg = f"mvn did not finish within {_FETCH_TIMEOUT_S:.0f}s"
                raise KafkaError(msg) from exc
            if proc.returncode != 0:
                text = _ANSI_RE.sub("", proc.stdout + proc.stderr)
                out = "\n".join(text.splitlines()[-40:])
                msg = f"mvn failed to fetch Kafka {version} (exit {proc.returncode}):\n{out}"
                raise KafkaError(msg)
            if not (staging / f"kafka_2.13-{version}.jar").is_file():
                msg = f"mvn succeeded but kafka_2.13-{version}.jar is missing in {staging}"
                raise KafkaError(msg)
            if libs.exists():
                shutil.rmtree(libs)
            staging.chmod(0o755)  # mkdtemp makes it private
            staging.rename(libs)
            marker.write_text(f"kafka {version}\n", encoding="utf-8")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                root.rmdir()  # only succeeds if a failed fetch left it empty
    return libs


# --------------------------------------------------------------------------
# Minimal Kafka wire protocol client (stdlib only)
# --------------------------------------------------------------------------


def _str(value: str) -> bytes:
    """Encode a non-nullable protocol STRING (int16 length + UTF-8)."""
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _nullable_str(value: str | None) -> bytes:
    """Encode a NULLABLE_STRING (length -1 for null)."""
    return struct.pack(">h", -1) if value is None else _str(value)


class _Reader:
    """Cursor over a response body with the primitive decoders we need."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self._data, self._pos)
        self._pos += struct.calcsize(fmt)
        return int(value)

    def i8(self) -> int:
        return self._take(">b")

    def i16(self) -> int:
        return self._take(">h")

    def i32(self) -> int:
        return self._take(">i")

    def nullable_str(self) -> str | None:
        size = self.i16()
        if size < 0:
            return None
        raw = self._data[self._pos : self._pos + size]
        self._pos += size
        return raw.decode(errors="replace")

    def string(self) -> str:
        return self.nullable_str() or ""

    def skip_i32_array(self) -> None:
        count = self.i32()
        self._pos += 4 * max(count, 0)


class _Connection:
    """One blocking TCP connection speaking non-flexible Kafka requests.

    Why hand-rolled: readiness checks and topic creation need only three
    request types; this keeps the module stdlib-only and avoids a JVM start
    (``kafka-topics``) per topic.
    """

    def __init__(self, bootstrap: str, timeout: float) -> None:
        host, _, port = bootstrap.rpartition(":")
        self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        self._correlation = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _recv_exact(self, size: int) -> bytes:
        chunks: list[bytes] = []
        while size:
            chunk = self._sock.recv(size)
            if not chunk:
                msg = "connection closed by broker"
                raise KafkaError(msg)
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def request(self, api_key: int, api_version: int, body: bytes) -> _Reader:
        """Send one request (header v1) and return a reader past the header.

        Args:
            api_key: Kafka API key.
            api_version: A non-flexible version of that API.
            body: Encoded request body.

        Returns:
            Reader positioned at the response body.

        Raises:
            KafkaError: On a mismatched correlation id or a closed socket.
        """
        self._correlation += 1
        header = struct.pack(">hhi", api_key, api_version, self._correlation)
        header += _str(_CLIENT_ID.decode())
        payload = header + body
        self._sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", self._recv_exact(4))
        reader = _Reader(self._recv_exact(size))
        if reader.i32() != self._correlation:
            msg = "correlation id mismatch"
            raise KafkaError(msg)
        return reader

    def api_versions(self) -> dict[int, tuple[int, int]]:
        """Return ``{api_key: (min_version, max_version)}`` (ApiVersions v0)."""
        reader = self.request(_API_VERSIONS, 0, b"")
        error = reader.i16()
        if error != _ERR_NONE:
            msg = f"ApiVersions failed with error code {error}"
            raise KafkaError(msg)
        ranges: dict[int, tuple[int, int]] = {}
        for _ in range(reader.i32()):
            key, low, high = reader.i16(), reader.i16(), reader.i16()
            ranges[key] = (low, high)
        return ranges

    def metadata(
        self, topics: list[str] | None
    ) -> tuple[int, dict[str, tuple[int, list[tuple[int, int]]]]]:
        """Fetch cluster metadata (Metadata v4; supported by 3.x and 4.x).

        Args:
            topics: Topic names; ``[]`` asks for no topics (cheap liveness
                probe), ``None`` for all topics.

        Returns:
            ``(broker_count, {topic: (error_code, [(partition, leader)])})``.
        """
        if topics is None:
            body = struct.pack(">i", -1)
        else:
            body = struct.pack(">i", len(topics)) + b"".join(_str(t) for t in topics)
        body += struct.pack(">b", 0)  # allow_auto_topic_creation = false
        reader = self.request(_API_METADATA, 4, body)
        reader.i32()  # throttle_time_ms
        brokers = reader.i32()
        for _ in range(brokers):
            reader.i32()  # node_id
            reader.string()  # host
            reader.i32()  # port
            reader.nullable_str()  # rack
        reader.nullable_str()  # cluster_id
        reader.i32()  # controller_id
        result: dict[str, tuple[int, list[tuple[int, int]]]] = {}
        for _ in range(reader.i32()):
            error = reader.i16()
            name = reader.string()
            reader.i8()  # is_internal
            partitions: list[tuple[int, int]] = []
            for _ in range(reader.i32()):
                reader.i16()  # partition error_code
                index = reader.i32()
                leader = reader.i32()
                reader.skip_i32_array()  # replica_nodes
                reader.skip_i32_array()  # isr_nodes
                partitions.append((index, leader))
            result[name] = (error, partitions)
        return brokers, result

    def find_coordinator(self, group: str) -> int:
        """Look up a consumer group's coordinator (FindCoordinator v1).

        v1 is the oldest version Kafka 4.x still serves and the layout up
        to v3. Only the error code matters to us.

        Returns:
            The error code (0 once ``__consumer_offsets`` is ready).
        """
        reader = self.request(_API_FIND_COORDINATOR, 1, _str(group) + struct.pack(">b", 0))
        reader.i32()  # throttle_time_ms
        return reader.i16()

    def create_topics(
        self,
        version: int,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: Mapping[str, str],
        timeout_ms: int,
    ) -> tuple[int, str | None]:
        """Create one topic (CreateTopics v2-v4 share one layout).

        Returns:
            ``(error_code, error_message)`` for the topic.
        """
        body = struct.pack(">i", 1) + _str(name)
        body += struct.pack(">ihi", partitions, replication_factor, 0)  # no assignments
        body += struct.pack(">i", len(configs))
        for key, value in configs.items():
            body += _str(key) + _nullable_str(value)
        body += struct.pack(">ib", timeout_ms, 0)  # validate_only = false
        reader = self.request(_API_CREATE_TOPICS, version, body)
        reader.i32()  # throttle_time_ms
        error, message = _ERR_NONE, None
        for _ in range(reader.i32()):
            topic = reader.string()
            code = reader.i16()
            text = reader.nullable_str()
            if topic == name:
                error, message = code, text
        return error, message


def _probe(bootstrap: str, timeout: float) -> bool:
    """Return whether the broker answers Metadata with at least one broker.

    Why Metadata and not "port is open": an open port does not mean the
    broker has registered with the controller and been unfenced, and a
    Metadata answer that lists a broker is exactly what clients wait for.
    """
    try:
        with _Connection(bootstrap, timeout) as conn:
            brokers, _ = conn.metadata([])
    except (OSError, KafkaError, struct.error):
        return False
    return brokers > 0


def wait_until_ready(
    bootstrap: str,
    timeout: float = 60.0,
    *,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Block until the broker at ``bootstrap`` serves Metadata.

    Args:
        bootstrap: ``host:port``.
        timeout: Seconds to wait at most.
        alive: Optional check called between attempts; when it returns
            ``False`` waiting stops early (e.g. the broker process died).

    Raises:
        KafkaError: On timeout or when ``alive()`` turns false.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and not alive():
            msg = f"Kafka at {bootstrap} exited before becoming ready"
            raise KafkaError(msg)
        remaining = deadline - time.monotonic()
        if _probe(bootstrap, timeout=max(0.5, min(2.0, remaining))):
            return
        if time.monotonic() >= deadline:
            msg = f"Kafka at {bootstrap} not ready after {timeout:.0f}s"
            raise KafkaError(msg)
        time.sleep(0.2)


def _warm_group_coordinator(bootstrap: str, timeout: float) -> None:
    """Create ``__consumer_offsets`` now rather than on first group use.

    The broker creates the offsets topic lazily, when a client first asks
    for a group coordinator, and answers COORDINATOR_NOT_AVAILABLE until it
    exists; every first consumer of a test run would pay that retry loop
    (and log errors). Doing it during start-up keeps tests deterministic.

    Args:
        bootstrap: ``host:port``.
        timeout: Seconds to wait at most.

    Raises:
        KafkaError: If the coordinator is not available in time.
    """
    deadline = time.monotonic() + timeout
    error = -1
    with _Connection(bootstrap, timeout) as conn:
        while time.monotonic() < deadline:
            error = conn.find_coordinator("faust-inference-devtools-warmup")
            if error == _ERR_NONE:
                return
            time.sleep(0.1)
    msg = f"group coordinator not available after {timeout:.0f}s (error {error})"
    raise KafkaError(msg)


def topic_partitions(bootstrap: str, name: str, timeout: float = 10.0) -> int | None:
    """Return the partition count of topic ``name``, or ``None`` if absent.

    Args:
        bootstrap: ``host:port``.
        name: Topic name.
        timeout: Socket timeout in seconds.

    Returns:
        Number of partitions, or ``None`` when the topic does not exist.
    """
    with _Connection(bootstrap, timeout) as conn:
        _, topics = conn.metadata([name])
    error, partitions = topics.get(name, (_ERR_NONE, []))
    if error != _ERR_NONE or not partitions:
        return None
    return len(partitions)


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 4,
    *,
    replication_factor: int = 1,
    configs: Mapping[str, str] | None = None,
    exist_ok: bool = True,
    timeout: float = 30.0,
) -> None:
    """Create a topic and wait until every partition has a leader.

    Speaks CreateTopics (v2-v4) over a socket: a JVM ``kafka-topics`` run
    costs seconds per topic, and aiokafka's admin client would make this
    module depend on the venv. Waiting for leaders afterwards matters
    because producers and consumers that race a fresh topic otherwise see
    ``LEADER_NOT_AVAILABLE`` and back off.

    Args:
        bootstrap: ``host:port`` of the broker.
        name: Topic name.
        partitions: Number of partitions.
        replication_factor: Replicas per partition (1 on a single node).
        configs: Topic configs, e.g. ``{"cleanup.policy": "compact"}``.
        exist_ok: Do not fail when the topic already exists (its partition
            count is then left as is).
        timeout: Seconds for creation plus leader election.

    Raises:
        KafkaError: When the broker rejects the request or times out.
    """
    deadline = time.monotonic() + timeout
    with _Connection(bootstrap, timeout) as conn:
        low, high = conn.api_versions().get(_API_CREATE_TOPICS, (0, -1))
        version = min(high, 4)
        if version < max(low, 2):
            msg = f"broker supports CreateTopics v{low}-v{high}, need one of v2-v4"
            raise KafkaError(msg)
        error, message = conn.create_topics(
            version, name, partitions, replication_factor, dict(configs or {}), int(timeout * 1000)
        )
        if error == _ERR_TOPIC_EXISTS and not exist_ok:
            msg = f"topic {name!r} already exists"
            raise KafkaError(msg)
        if error not in (_ERR_NONE, _ERR_TOPIC_EXISTS):
            msg = f"creating topic {name!r} failed: error {error} {message or ''}".rstrip()
            raise KafkaError(msg)
        while True:
            _, topics = conn.metadata([name])
            topic_error, parts = topics.get(name, (_ERR_NONE, []))
            if topic_error == _ERR_NONE and parts and all(leader >= 0 for _, leader in parts):
                return
            if topic_error not in (_ERR_NONE, *_ERR_RETRIABLE):
                msg = f"topic {name!r} metadata error {topic_error}"
                raise KafkaError(msg)
            if time.monotonic() >= deadline:
                msg = f"topic {name!r} has no leader for every partition after {timeout:.0f}s"
                raise KafkaError(msg)
            time.sleep(0.1)


# --------------------------------------------------------------------------
# Broker process
# --------------------------------------------------------------------------


def _random_cluster_id() -> str:
    """Return a cluster id as Kafka's ``Uuid.randomUuid().toString()`` would.

    22 characters of unpadded base64url. Kafka never hands out ids starting
    with ``-`` (they read as CLI options), so neither do we.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _major(version: str) -> int:
    """Return the major number of a version string (``"4.1.1"`` -> 4)."""
    return int(version.split(".", 1)[0])


def _write_properties(path: Path, props: Mapping[str, str]) -> None:
    """Write a Java ``.properties`` file (our values need no escaping)."""
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")


def _format_storage(java_cp: list[str], config: Path) -> None:
    """Run ``kafka.tools.StorageTool format`` for ``config``'s log dirs.

    Args:
        java_cp: ``[java, *system properties, "-cp", classpath]``.
        config: ``server.properties`` naming ``log.dirs`` and ``node.id``.

    Raises:
        KafkaError: If the tool fails or exceeds its time limit.
    """
    # A short-lived JVM, so favour start-up over peak speed.
    java, *rest = java_cp
    cmd = [java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", *rest]
    cmd += [STORAGE_TOOL_CLASS, "format", "-t", _random_cluster_id(), "-c", str(config)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_FORMAT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        msg = f"{STORAGE_TOOL_CLASS} format timed out after {_FORMAT_TIMEOUT_S:.0f}s"
        raise KafkaError(msg) from exc
    if proc.returncode != 0:
        msg = f"{STORAGE_TOOL_CLASS} format failed (exit {proc.returncode}):\n"
        raise KafkaError(msg + proc.stdout + proc.stderr)


_LOG4J2_TEMPLATE: Final = """\
# Written by devtools/kafka.py: broker logs go to a file, not stdout.
status = warn
# Kafka stops itself on SIGTERM; log4j's own hook only races it.
shutdownHook = disable
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
# The per-request and state-change chatter is useless in tests.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
"""

_live_brokers: set[KafkaBroker] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_live_brokers() -> None:
    """Stop brokers a caller forgot, so an interpreter exit leaves no JVM."""
    with _live_lock:
        brokers = list(_live_brokers)
    for broker in brokers:
        broker.stop()


class KafkaBroker(_process.Service):
    """A single-node KRaft Kafka (broker + controller) on 127.0.0.1.

    Typical use::

        with KafkaBroker() as kafka:
            app = faust.App("x", broker=kafka.url)
            kafka.create_topic("requests", partitions=4)

    Each instance gets its own temp directory (config, data, logs) and its
    own free ports, so parallel test workers do not collide. The directory
    is deleted by :meth:`stop` unless ``keep_workdir`` is set.

    The configuration trades durability for speed on a 2-core box: small
    internal topics, replication factor 1, no initial rebalance delay,
    few threads, a small log-cleaner buffer, fast broker heartbeats.

    Start-up is about 2.5-3.5 s once warm. Two caches next to the jars make
    it so: a pre-formatted KRaft log dir (skips a ~2 s formatting JVM) and
    a JVM class-data-sharing archive (written when the first broker stops).
    The very first start and stop per version are therefore slower
    (about 8 s and 4-10 s).

    The JVM is started in its own session (a terminal Ctrl-C reaches only
    Python, which then stops it in order) and, on Linux, with a parent-death
    signal, so a test run that is SIGKILLed leaves no broker behind (its
    temp directory does stay).
    """

    def __init__(
        self,
        version: str | None = None,
        *,
        port: int = 0,
        heap: str = "512m",
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        extra_properties: Mapping[str, str] | None = None,
        keep_workdir: bool = False,
        die_with_parent: bool | None = None,
        class_data_sharing: bool = True,
        cache_dir: Path | None = None,
    ) -> None:
        """Configure (but do not start) a broker.

        Args:
            version: Kafka version (``None``: :func:`default_version`).
            port: Client (PLAINTEXT) port; 0 picks a free one.
            heap: JVM ``-Xmx`` value.
            startup_timeout: Seconds :meth:`start` waits for readiness.
            stop_timeout: Seconds :meth:`stop` waits after SIGTERM before
                SIGKILL.
            extra_properties: ``server.properties`` entries that override or
                add to the defaults (e.g. ``{"message.max.bytes": "..."}``).
            keep_workdir: Keep the temp dir (logs, data) after :meth:`stop`.
            die_with_parent: Kill the JVM if this process dies (Linux
                ``PR_SET_PDEATHSIG``). ``None`` means "only when started
                from the main thread", since the signal follows the thread.
            class_data_sharing: Use (and on first run create) a JVM class
                data sharing archive in the jar cache (~40% faster start).
            cache_dir: Cache root passed to :func:`ensure_jars`.
        """
        self.version = _check_version(version or default_version())
        self._requested_port = port
        self._heap = heap
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._extra = dict(extra_properties or {})
        self._keep_workdir = keep_workdir
        self._die_with_parent = die_with_parent
        self._class_data_sharing = class_data_sharing
        self._cache_dir = cache_dir
        self._cds_dump: tuple[Path, Path] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._port: int | None = None
        self._controller_port: int | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ API

    @property
    def port(self) -> int:
        """Client port of the running broker."""
        if self._port is None:
            msg = "broker not started"
            raise KafkaError(msg)
        return self._port

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT``, for aiokafka/kafka clients."""
        return f"{_HOST}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://127.0.0.1:PORT``, for ``faust.App(broker=...)``."""
        return f"kafka://{self.bootstrap}"

    @property
    def pid(self) -> int | None:
        """PID of the broker JVM, or ``None`` when not running."""
        return self._proc.pid if self._proc is not None else None

    @property
    def workdir(self) -> Path | None:
        """Temp directory with ``server.properties``, data and logs."""
        return self._workdir

    @property
    def log_path(self) -> Path | None:
        """Broker log file (log4j2 output), for debugging failed tests."""
        return self._workdir / "server.log" if self._workdir else None

    @property
    def running(self) -> bool:
        """Whether the broker JVM is alive."""
        return self._proc is not None and self._proc.poll() is None

    def create_topic(
        self,
        name: str,
        partitions: int = 4,
        *,
        configs: Mapping[str, str] | None = None,
        exist_ok: bool = True,
        timeout: float = 30.0,
    ) -> None:
        """Create a topic on this broker; see module-level :func:`create_topic`."""
        create_topic(
            self.bootstrap,
            name,
            partitions,
            configs=configs,
            exist_ok=exist_ok,
            timeout=timeout,
        )

    def start(self) -> Self:
        """Fetch jars if needed, format storage, launch and await readiness.

        Returns:
            ``self``, so ``broker = KafkaBroker().start()`` works.

        Raises:
            KafkaError: If Java is missing, formatting fails, or the broker
                does not serve Metadata within ``startup_timeout`` (the
                message includes the log's ERROR lines and tail). With an
                automatic port, a lost race for it is retried twice.
        """
        with self._lock:
            if self._proc is not None:
                msg = "broker already started"
                raise KafkaError(msg)
            libs = ensure_jars(self.version, cache_dir=self._cache_dir)
            java = shutil.which("java")
            if java is None:
                msg = "'java' is not on PATH (Kafka needs Java 17+)"
                raise KafkaError(msg)
            attempts = 1 if self._requested_port else _PORT_RETRIES
            for attempt in range(1, attempts + 1):
                try:
                    self._launch(java, libs)
                except KafkaError as exc:
                    bind_failed = "Address already in use" in str(exc)
                    self._cleanup()
                    if not bind_failed or attempt == attempts:
                        raise
                except BaseException:  # e.g. Ctrl-C while waiting: no orphan
                    self._cleanup()
                    raise
                else:
                    with _live_lock:
                        _live_brokers.add(self)
                    return self
        raise AssertionError  # pragma: no cover - loop always returns/raises

    def stop(self) -> None:
        """Stop the broker by PID and remove its temp directory.

        SIGTERM lets Kafka shut down cleanly (it does a controlled shutdown
        and flushes); after ``stop_timeout`` seconds it gets SIGKILL. The
        very first broker per Kafka version and JVM gets 30 s more, as it
        then also writes the class-data-sharing archive (see
        ``class_data_sharing``). Safe to call repeatedly and on a broker
        that never started.
        """
        with self._lock:
            self._cleanup()
        with _live_lock:
            _live_brokers.discard(self)

    def __repr__(self) -> str:
        """Show version, address and state for test failure output."""
        where = self.bootstrap if self._port else "not started"
        return f"KafkaBroker(version={self.version!r}, {where}, pid={self.pid})"

    # ------------------------------------------------------------ internals

    def _properties(self, data_dir: Path) -> dict[str, str]:
        """Return ``server.properties`` for a combined single-node KRaft."""
        port, cport = self._port, self._controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{_HOST}:{cport}",
            "listeners": f"PLAINTEXT://{_HOST}:{port},CONTROLLER://{_HOST}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{_HOST}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data_dir),
            "num.partitions": "4",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            # Internal topics: one replica, few partitions (50 by default:
            # slow to create on the first consumer group / transaction).
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            # Consumers join without the default 3 s wait for more members.
            "group.initial.rebalance.delay.ms": "0",
            # Small box: fewer threads, small cleaner buffer (128 MiB default).
            "num.network.threads": "2",
            "num.io.threads": "4",
            "background.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            # Faster unfencing at start-up and controlled shutdown at stop
            # (the session timeout stays at its default, so a loaded CI box
            # does not get the broker fenced).
            "broker.heartbeat.interval.ms": "500",
        }
        if _major(self.version) >= 4:
            props["share.coordinator.state.topic.replication.factor"] = "1"
            props["share.coordinator.state.topic.min.isr"] = "1"
        props.update(self._extra)
        return props

    def _launch(self, java: str, libs: Path) -> None:
        """Write config, format storage, start the JVM, wait for readiness."""
        if self._requested_port:
            self._port = self._requested_port
            (self._controller_port,) = _process.free_ports(1, _HOST)
        else:
            self._port, self._controller_port = _process.free_ports(2, _HOST)
        workdir = Path(tempfile.mkdtemp(prefix="faust-inference-kafka-"))
        self._workdir = workdir
        data_dir = workdir / "data"
        config = workdir / "server.properties"
        _write_properties(config, self._properties(data_dir))
        log4j = workdir / "log4j2.properties"
        log4j.write_text(_LOG4J2_TEMPLATE.format(log_file=workdir / "server.log"), encoding="utf-8")
        # An explicit, sorted jar list rather than "libs/*": the JVM expands
        # the wildcard in directory order, and the class-data-sharing archive
        # is only accepted when the class path is identical.
        classpath = os.pathsep.join(str(jar) for jar in sorted(libs.glob("*.jar")))
        common = [
            "-Djava.awt.headless=true",
            "-Djava.net.preferIPv4Stack=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={workdir}",
        ]
        self._prepare_storage([java, *common, "-cp", classpath], libs, data_dir, config)
        # Broker: G1 with short pauses, as Kafka's own start script does.
        cmd = [
            java,
            f"-Xmx{self._heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:-UsePerfData",
            *self._cds_flags(java, libs, classpath),
            *common,
            "-cp",
            classpath,
            BROKER_MAIN_CLASS,
            str(config),
        ]
        # SIGKILL the JVM if this process dies, so a crashed or SIGKILLed test
        # run leaves no orphan broker. The signal follows the thread that
        # forks, hence by default only from the main thread.
        die = self._die_with_parent
        if die is None:
            die = threading.current_thread() is threading.main_thread()
        preexec = _process.parent_death_preexec(signal.SIGKILL) if die else None
        console = workdir / "console.log"
        with console.open("wb") as out:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                # Own session: a Ctrl-C in the terminal reaches only Python,
                # which then stops the broker in order.
                start_new_session=True,
                preexec_fn=preexec,
            )
        proc = self._proc
        deadline = time.monotonic() + self._startup_timeout
        try:
            wait_until_ready(
                self.bootstrap,
                self._startup_timeout,
                alive=lambda: proc.poll() is None,
            )
            _warm_group_coordinator(self.bootstrap, max(5.0, deadline - time.monotonic()))
        except KafkaError as exc:
            log = workdir / "server.log"
            msg = (
                f"{exc}\n--- errors in {log} ---\n{_errors(log)}\n"
                f"--- {log} (tail) ---\n{_process.tail(log, 20)}\n"
                f"--- {console} (tail) ---\n{_process.tail(console, 40)}"
            )
            raise KafkaError(msg) from None

    def _prepare_storage(
        self, java_cp: list[str], libs: Path, data_dir: Path, config: Path
    ) -> None:
        """Give the broker a formatted KRaft log dir.

        Formatting is a separate JVM run (about 2 s on 2 cores), yet its
        output (``meta.properties`` with cluster, node and directory ids,
        ``bootstrap.checkpoint`` with the metadata version and feature
        levels) depends neither on ports nor on paths. So the first start
        per Kafka version and configuration formats a template under
        the jar cache and every start copies it (milliseconds). Brokers
        started from one template share a cluster id, which is harmless as
        they never talk to each other. When ``extra_properties`` moves the
        log dirs, every start formats for real.

        Args:
            java_cp: ``[java, *system properties, "-cp", classpath]``.
            libs: Jar folder; templates live next to it.
            data_dir: The broker's ``log.dirs``.
            config: The broker's ``server.properties``.
        """
        if {"log.dir", "log.dirs", "metadata.log.dir"} & self._extra.keys():
            _format_storage(java_cp, config)
            return
        # Key on everything but the per-run ports and paths, so a change to
        # the defaults or to extra_properties gets its own template.
        varying = {"listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs"}
        props = self._properties(data_dir)
        key = json.dumps(
            [self.version, sorted((k, v) for k, v in props.items() if k not in varying)]
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        template = libs.parent / f"formatted-{digest}"
        lock = libs.parent / "formatted.lock"
        with _process.file_lock(lock, _FORMAT_TIMEOUT_S + 30, error=KafkaError):
            if not (template / "meta.properties").is_file():
                staging = Path(tempfile.mkdtemp(prefix="formatted.tmp-", dir=libs.parent))
                try:
                    staging_config = staging / "server.properties"
                    _write_properties(staging_config, self._properties(staging / "data"))
                    _format_storage(java_cp, staging_config)
                    shutil.rmtree(template, ignore_errors=True)
                    (staging / "data").rename(template)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(template, data_dir)

    def _cds_flags(self, java: str, libs: Path, classpath: str) -> list[str]:
        """Return JVM flags for an application class-data-sharing archive.

        Loading and verifying Kafka's classes dominates start-up on a small
        box. Java 17 can dump the classes a run loaded into an archive at
        exit (``-XX:ArchiveClassesAtExit``) and map it in later runs
        (``-XX:SharedArchiveFile``): measured 2.6 s instead of 4.3 s to
        ready on a busy 2-core box. The first broker per Kafka version and JVM
        dumps the archive when :meth:`stop` lets it exit cleanly; later
        ones use it. A stale or mismatched archive is only a warning to the
        JVM (it then runs without), and the key covers the JVM binary and
        the class path so an upgrade makes a new one.

        Args:
            java: Path of the ``java`` launcher.
            libs: Jar folder; the archive lives next to it.
            classpath: The exact class path the broker runs with.

        Returns:
            Flags to add to the broker command line (empty if disabled).
        """
        if not self._class_data_sharing:
            return []
        real = Path(java).resolve()
        stat = real.stat()
        key = f"{real}|{stat.st_mtime_ns}|{stat.st_size}|{classpath}"
        archive = libs.parent / f"broker-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsa"
        if archive.is_file():
            return [f"-XX:SharedArchiveFile={archive}"]
        dump = archive.with_name(f"{archive.name}.tmp-{uuid.uuid4().hex}")
        self._cds_dump = (dump, archive)
        return [f"-XX:ArchiveClassesAtExit={dump}"]

    def _publish_cds_archive(self, returncode: int | None) -> None:
        """Move a freshly dumped archive into place after a clean JVM exit.

        Only a JVM that exited by itself (a non-negative return code, e.g.
        143 after SIGTERM) has finished writing the dump; after SIGKILL the
        file may be partial and is dropped.
        """
        pending, self._cds_dump = self._cds_dump, None
        if pending is None:
            return
        dump, archive = pending
        try:
            clean_exit = returncode is not None and returncode >= 0
            if clean_exit and dump.is_file() and dump.stat().st_size > 0 and not archive.exists():
                os.replace(dump, archive)
        finally:
            dump.unlink(missing_ok=True)

    def _cleanup(self) -> None:
        """Terminate the JVM (TERM, then KILL) and drop the temp dir."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # A JVM dumping its class-sharing archive (first run only) needs
            # extra seconds after Kafka itself has shut down. Its session
            # holds nothing but the JVM.
            grace = _CDS_DUMP_GRACE_S if self._cds_dump is not None else 0.0
            _process.terminate_group(proc, self._stop_timeout + grace)
        if proc is not None:
            self._publish_cds_archive(proc.poll())
        if self._workdir is not None and not self._keep_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None if not self._keep_workdir else self._workdir
        self._port = None
        self._controller_port = None


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _cmd_start(args: argparse.Namespace) -> int:
    """Run a broker until SIGINT/SIGTERM (``start`` sub-command)."""
    broker = KafkaBroker(args.version, port=args.port, keep_workdir=args.keep_workdir)
    started = time.monotonic()

    def ready() -> None:
        sys.stderr.write(
            f"Kafka {broker.version} ready in {time.monotonic() - started:.1f}s, "
            f"pid {broker.pid}, log {broker.log_path}\n"
        )
        sys.stdout.write(f"KAFKA_BOOTSTRAP={broker.bootstrap}\n")
        sys.stdout.flush()

    def died() -> None:
        sys.stderr.write("Kafka broker exited unexpectedly\n")

    return _process.serve_until_signal(
        broker, alive=lambda: broker.running, on_ready=ready, on_death=died
    )


def _cmd_fetch(args: argparse.Namespace) -> int:
    """Fetch (or confirm cached) jars (``fetch`` sub-command)."""
    started = time.monotonic()
    libs = ensure_jars(args.version)
    sys.stderr.write(f"Kafka jars ready in {time.monotonic() - started:.1f}s\n")
    sys.stdout.write(f"{libs}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m devtools.kafka``.

    Args:
        argv: Arguments without the program name (``None``: ``sys.argv``).

    Returns:
        Process exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m devtools.kafka",
        description="Run a local single-node Apache Kafka (KRaft) from Maven jars.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a broker, print KAFKA_BOOTSTRAP=..., run")
    fetch = sub.add_parser("fetch", help="only fetch the jars into the cache")
    for command in (start, fetch):
        command.add_argument(
            "--version",
            default=None,
            help=f"Kafka version (default: ${VERSION_ENV} or {DEFAULT_VERSION})",
        )
    start.add_argument("--port", type=int, default=0, help="client port (default: free)")
    start.add_argument(
        "--keep-workdir", action="store_true", help="keep config/data/logs after stop"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            return _cmd_start(args)
        return _cmd_fetch(args)
    except KafkaError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
