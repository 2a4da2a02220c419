"""``batch_size="auto"``, the default: batching against a real server, and a server that refuses it.

A model registered with nothing but ``max_concurrency=`` must batch where the
protocol does (here the Open Inference Protocol against a real MLServer), and
must still answer every event when a server refuses batches.
"""

import asyncio
import logging
import math

import pytest

from examples.fraud_detection.train import make_transactions
from faust_inference.core.hooks import InferenceHooks

INFER = "/v2/models/{name}/infer"


class RequestSizes(InferenceHooks):
    """Records the inputs carried by each request of one model (every attempt counts)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.sizes: list[int] = []

    def on_request_start(self, settings, batch_size):  # type: ignore[no-untyped-def]
        if settings.name == self.model:
            self.sizes.append(batch_size)


async def test_a_default_registration_batches_against_mlserver_and_loses_nothing(
    mlserver, registry
):
    requests = RequestSizes("fraud")
    registry.hooks.add(requests)
    model = registry.register(
        "fraud",
        provider="kserve",
        endpoint=mlserver.url,
        input_name="features",
        max_concurrency=8,
    )
    assert model.settings.batch_size == "auto"
    rows, _ = make_transactions(400, seed=11)
    # Events arrive in bursts, as a stream's do.
    chunks = [rows[i : i + 100] for i in range(0, 400, 100)]
    outputs = [p for chunk in chunks for p in await model.predict_many(chunk)]
    assert len(outputs) == 400
    assert all(len(p) == 2 and math.isclose(sum(p), 1.0, abs_tol=1e-9) for p in outputs)
    # Every event was sent exactly once (no retry, no split), in far fewer requests.
    assert sum(requests.sizes) == 400
    assert len(requests.sizes) <= 400 / 8 and max(requests.sizes) >= 32
    assert requests.sizes[0] == 1  # it starts alone, then grows
    # Batching does not change the answers.
    single = registry.register(
        "fraud-single",
        provider="kserve",
        endpoint=mlserver.url,
        remote_name="fraud",
        input_name="features",
        batch_size=1,
    )
    for i in (0, 123, 399):
        assert await single.predict(rows[i]) == pytest.approx(outputs[i], abs=1e-12)


async def test_a_server_that_refuses_batches_still_answers_every_event(registry, caplog):
    # Fault injection: the fake endpoint answers 400 to any batch of more than
    # one row (as a model server without a batch dimension does); no real
    # server we run can be configured to refuse batches.
    from devtools.fake_endpoint.server import FakeEndpoint

    async with FakeEndpoint(latency=0.005, max_batch=1) as ep:
        model = registry.register(
            "strict", provider="kserve", endpoint=ep.url, max_concurrency=4, circuit_breaker=False
        )
        rows = [[(i % 7) / 10, -(i % 5) / 10, i / 100] for i in range(120)]
        with caplog.at_level(logging.WARNING, logger="faust_inference.core.runner"):
            results = await asyncio.gather(
                *(model.predict(r) for r in rows), return_exceptions=True
            )
        failed = [r for r in results if isinstance(r, BaseException)]
        assert failed == []
        for row, p in zip(rows, results, strict=True):
            p1 = 1 / (1 + math.exp(-sum(row)))
            assert p == pytest.approx([1 - p1, p1], abs=1e-9)
        assert model.runner.batch_size == model.runner.current_batch_size == 1
        refusals = [r for r in caplog.records if "refused a batch" in r.getMessage()]
        assert len(refusals) == 1, [r.getMessage() for r in refusals]
        # One request per event, plus the refused batches (each resent alone).
        served = ep.stats.by_route[INFER]
        assert 120 < served <= 120 + 8, served
