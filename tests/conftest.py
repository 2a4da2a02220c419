"""Shared fixtures: the real services that integration tests run against.

Each service starts once per test session, on free ports of 127.0.0.1, and is
stopped by its own PID at the end. Tests use fresh topic and group names.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
async def registry() -> AsyncIterator[object]:
    """A model registry of its own, closed (connections released) after the test."""
    from faust_inference import ModelRegistry

    registry = ModelRegistry()
    yield registry
    await registry.aclose()


@pytest.fixture(scope="session")
def kafka() -> Iterator[object]:
    """A real single-node Kafka (KRaft) broker."""
    from devtools.kafka import KafkaBroker

    broker = KafkaBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """MLServer serving the example's scikit-learn fraud classifier."""
    from devtools.mlserver import MLServer, ensure_venv, prepare_fraud_model

    ensure_venv()
    trained = prepare_fraud_model()
    models = tmp_path_factory.mktemp("mlserver-models")
    shutil.copytree(Path(trained) / "fraud", models / "fraud")
    server = MLServer(models)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llm() -> Iterator[object]:
    """SmolLM2-135M-Instruct behind llama-cpp-python's OpenAI-compatible server."""
    from devtools.llm import LlamaServer

    server = LlamaServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def embeddings() -> Iterator[object]:
    """infinity-emb serving all-MiniLM-L6-v2 behind an OpenAI-compatible API."""
    from devtools.embeddings import EmbeddingServer

    server = EmbeddingServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
