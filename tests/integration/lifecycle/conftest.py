"""One group of two workers for every lifecycle scenario: starting workers is the cost.

v1 is the real MLServer (``/v2/models/fraud/versions/v1/infer``); v2 is the fake
endpoint (a test double), because the shadow and rollout scenarios need a version
that is slow or fails on command; it runs in a thread of its own so that it
outlives each test's event loop. v3 is the fake endpoint in its own process, fast
enough for the split test's 20,000 events in CI time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.support import fake_endpoint
from devtools.fake_endpoint import FakeEndpoint
from tests.integration.lifecycle.support import Worker, lifecycle_env
from tests.integration.support import unique


class ThreadedEndpoint:
    """A FakeEndpoint served from its own thread and loop; configure() from any thread."""

    def __init__(self, **config: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.endpoint = FakeEndpoint(**config)
        self.url = self._call(self.endpoint.start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def configure(self, **changes: Any) -> None:
        async def apply() -> None:
            self.endpoint.configure(**changes)

        self._call(apply())

    def close(self) -> None:
        self._call(self.endpoint.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Group:
    """The app's environment and its two workers (restartable)."""

    def __init__(self, env: dict[str, str], workdir: Any, v2: ThreadedEndpoint) -> None:
        self.env, self.workdir, self.v2 = env, workdir, v2
        self.generation = 0
        self.workers: list[Worker] = []
        self.settled = False

    def start(self) -> None:
        self.generation += 1
        self.workers = [
            Worker(
                "tests.integration.lifecycle.app", self.env, self.workdir, f"g{self.generation}w{i}"
            ).start()
            for i in range(2)
        ]
        self.settled = False

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def restart_one(self) -> None:
        """Stop the first worker (the other takes every partition), then start a new one."""
        self.generation += 1
        self.workers[0].stop()
        self.workers[0] = Worker(
            "tests.integration.lifecycle.app", self.env, self.workdir, f"g{self.generation}w0"
        ).start()
        self.settled = False


@pytest.fixture(scope="module")
def group(kafka: Any, mlserver: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Group]:
    v2 = ThreadedEndpoint(latency=0.005)
    labels = unique("labels")
    kafka.create_topic(labels, partitions=4)
    with fake_endpoint(0.005) as v3:
        env = lifecycle_env(
            kafka,
            mlserver.url,
            V2_URL=v2.url,
            V3_URL=v3,
            LABELS_TOPIC=labels,
            SHADOW_IN_FLIGHT="4",
            V2='{"retries": 0}',
            V3='{"batch_size": 64, "batch_timeout": 0.02}',
            # Busy CI machines run late: the test counts the cap and
            # failures; shedding under lag is unit-tested.
            SHADOW_MAX_LAG="10",
        )
        g = Group(env, tmp_path_factory.mktemp("lifecycle"), v2)
        g.start()
        try:
            yield g
        finally:
            g.stop()
            v2.close()
