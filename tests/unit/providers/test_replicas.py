"""Replica lists on the openai and http providers, and the refusal on providers without pools.

The replicas are fake endpoints (the test double, real HTTP on 127.0.0.1):
what each one received is read from its own counters, which a real vLLM or
embeddings server does not expose; the pool itself on a real broker is in
tests/integration/test_pool.py.
"""

from __future__ import annotations

import asyncio

import pytest

from devtools.fake_endpoint import FakeEndpoint
from faust_inference import ConfigurationError, ModelNotFound, ModelRegistry
from faust_inference.providers.pool import ReplicaPool

EMBED = "/v1/embeddings"


async def test_openai_embeddings_spread_over_every_replica(registry: ModelRegistry) -> None:
    async with (
        FakeEndpoint(dim=4, latency=0.02, model="emb") as a,
        FakeEndpoint(dim=4, latency=0.02, model="emb") as b,
    ):
        model = registry.register(
            "emb",
            provider="openai",
            endpoint=[f"{a.url}/v1", f"{b.url}/v1"],
            task="embedding",
            batch_size=1,
            max_concurrency=8,
        )
        await model.runner.provider.ready()  # type: ignore[attr-defined]
        vectors = await asyncio.gather(*(model.predict(f"text {i}") for i in range(16)))
        assert len(vectors) == 16 and all(len(v) == 4 for v in vectors)
        served = (a.stats.by_route[EMBED], b.stats.by_route[EMBED])
        assert sum(served) == 16
        assert min(served) >= 4, served  # least in flight: both take a share


async def test_http_provider_spreads_over_its_replicas(registry: ModelRegistry) -> None:
    async with FakeEndpoint(latency=0.02) as a, FakeEndpoint(latency=0.02) as b:
        model = registry.register(
            "chat",
            provider="http",
            endpoint=[a.url, b.url],
            path="/v1/chat/completions",
            batch_size=1,
            max_concurrency=8,
            request_builder=lambda rows: {
                "model": "m",
                "messages": [{"role": "user", "content": rows[0]}],
            },
            response_parser=lambda body, n: [body["choices"][0]["message"]["content"]],
        )
        assert isinstance(model.runner.provider.wire, ReplicaPool)  # type: ignore[attr-defined]
        outputs = await asyncio.gather(*(model.predict(f"hi {i}") for i in range(12)))
        assert all(isinstance(o, str) and o for o in outputs)
        served = [ep.stats.by_route["/v1/chat/completions"] for ep in (a, b)]
        assert sum(served) == 12 and min(served) >= 3, served


async def test_openai_readiness_fails_when_one_replica_lacks_the_model(
    registry: ModelRegistry,
) -> None:
    async with FakeEndpoint(model="mini") as a, FakeEndpoint(model="other") as b:
        model = registry.register(
            "emb",
            provider="openai",
            endpoint=[f"{a.url}/v1", f"{b.url}/v1"],
            remote_name="mini",
            task="embedding",
        )
        with pytest.raises(ModelNotFound, match="mini"):
            await model.runner.provider.ready()  # type: ignore[attr-defined]


def test_every_replicas_password_is_scrubbed(registry: ModelRegistry) -> None:
    model = registry.register(
        "emb",
        provider="openai",
        endpoint=["http://u:first-pass@127.0.0.1:1/v1", "http://u:second-pass@127.0.0.1:2/v1"],
        task="embedding",
    )
    secrets = model.runner.provider.secrets()  # type: ignore[attr-defined]
    assert {"first-pass", "second-pass"} <= set(secrets)
    assert "pass" not in repr(model)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"endpoint": ["http://127.0.0.1:1", "http://127.0.0.1:2"]}, "endpoint= with 2 URLs"),
        ({"endpoint": "http://127.0.0.1:1", "hedge": True}, "hedge="),
    ],
)
def test_a_provider_without_pools_refuses_replicas_and_hedging(
    registry: ModelRegistry, extra: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        registry.register("scorer", provider="azureml", api_key="k-123", **extra)
    message = str(raised.value)
    assert named in message and "azureml" in message and "fallback=" in message
    assert "scorer" not in registry


def test_azure_openai_keeps_to_one_resource(registry: ModelRegistry) -> None:
    with pytest.raises(ConfigurationError, match="endpoint= with 2 URLs"):
        registry.register(
            "chat",
            provider="azure_openai",
            endpoint=["https://a.openai.azure.com", "https://b.openai.azure.com"],
            api_key="k-123",
            task="text_generation",
        )
