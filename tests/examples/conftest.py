"""Fixtures for the tests that run an example briefly: its app as a real worker process.

The broker is the session's ``kafka`` fixture (tests/conftest.py); each example's test
starts the model server it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.worker import FaustWorker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def start_worker(
    kafka: Any, tmp_path: Path
) -> Iterator[Callable[[str, dict[str, str], Iterable[str]], FaustWorker]]:
    """Create topics (4 partitions), then start ``faust -A <app> worker`` with ``env``.

    Every worker started is stopped after the test.
    """
    workers: list[FaustWorker] = []

    def start(app: str, env: dict[str, str], topics: Iterable[str] = ()) -> FaustWorker:
        for topic in topics:
            kafka.create_topic(topic, partitions=4)
        worker = FaustWorker(app, env, tmp_path, f"worker-{len(workers)}", log_level="warn")
        workers.append(worker.start())
        return worker

    yield start
    for worker in workers:
        worker.stop()
