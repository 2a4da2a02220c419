"""Install what the Flink side of the benchmark needs, once, under ``<repo>/.cache``.

* ``.cache/venv-flink``: a virtualenv with ``apache-flink==2.3.0`` (about 850 MB,
  about a minute). It stays apart from ``.venv``: it pins apache-beam, pyarrow,
  numpy and pandas, which must not meet this project's dependencies.
* ``.cache/flink-jars``: what the wheel lacks, fetched by Maven from
  ``benchmarks/flink/pom.xml``: the ``openai`` model provider
  (``flink-model-openai``) and the Kafka SQL connector.

Both are rebuilt when their inputs change (a marker holds the pins and a hash of
the pom) and reused otherwise; an interrupted install is redone, not used.
Stdlib only, so any Python 3.11 can run it::

    python -m benchmarks.flink.install      # prints FLINK_PYTHON=... and FLINK_JARS=...
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

try:
    from devtools import _process
except ImportError:  # run as a file, not with -m
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from devtools import _process

__all__ = ["FLINK_REQUIREMENT", "ensure_jars", "ensure_venv", "flink_python"]

REPO = Path(__file__).resolve().parents[2]
POM = Path(__file__).with_name("pom.xml")
CACHE = REPO / ".cache"
VENV = CACHE / "venv-flink"
JARS = CACHE / "flink-jars"
FLINK_REQUIREMENT = "apache-flink==2.3.0"
WANTED_JARS = ("flink-model-openai-", "flink-sql-connector-kafka-")


def flink_python(venv: Path = VENV) -> Path:
    """The Flink virtualenv's interpreter."""
    return venv / "bin" / "python"


def ensure_venv(venv: Path = VENV) -> Path:
    """Create the PyFlink virtualenv unless it is complete; returns its folder."""
    return _process.install_once(venv, FLINK_REQUIREMENT + "\n", _install_venv)


def ensure_jars(folder: Path = JARS) -> Path:
    """Fetch the provider and connector jars with Maven unless cached; returns the folder."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    return _process.install_once(folder, f"pom {digest}\n", _fetch_jars)


def _install_venv(venv: Path) -> None:
    _log(f"creating {venv} with {FLINK_REQUIREMENT} (about a minute, about 850 MB)")
    started = time.monotonic()
    _run([sys.executable, "-m", "venv", "--clear", str(venv)])
    _run(
        [
            str(flink_python(venv)),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            FLINK_REQUIREMENT,
        ]
    )
    _log(f"venv ready in {time.monotonic() - started:.0f} s")


def _fetch_jars(folder: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven ('mvn') is not on PATH; it fetches the Flink jars")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _log(f"fetching the Flink model provider and Kafka connector into {folder}")
    # excludeTransitive: both jars are shaded; the Flink runtime comes from the wheel.
    _run(
        [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DexcludeTransitive=true",
            f"-DoutputDirectory={folder}",
        ]
    )
    names = [p.name for p in folder.glob("*.jar")]
    missing = [w for w in WANTED_JARS if not any(n.startswith(w) for n in names)]
    if missing:
        raise RuntimeError(f"Maven did not deliver {missing} into {folder}")


def _run(cmd: list[str]) -> None:
    # stdout goes to stderr: the caller's stdout carries only the KEY=value lines.
    subprocess.run(cmd, check=True, stdout=sys.stderr)


def _log(message: str) -> None:
    print(f"[flink] {message}", file=sys.stderr, flush=True)


def main() -> int:
    """Install both, print where they are."""
    venv, jars = ensure_venv(), ensure_jars()
    print(f"FLINK_PYTHON={flink_python(venv)}")
    print(f"FLINK_JARS={jars}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
