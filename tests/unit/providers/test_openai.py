"""Request and response format of the openai provider.

Against the fake endpoint (a test double) to assert exact request bodies;
tests/integration/test_embeddings.py runs it against a real embeddings server.
"""

import orjson
import pytest

from devtools.fake_endpoint import FakeEndpoint
from faust_inference import ConfigurationError, InvalidInput, ModelRegistry


async def test_embeddings_are_batched_and_come_back_in_input_order(registry):
    async with FakeEndpoint(dim=4) as ep:
        model = registry.register(
            "emb",
            provider="openai",
            endpoint=f"{ep.url}/v1",
            remote_name="mini",
            task="embedding",
            batch_size=8,
            batch_timeout=0.05,
            dimensions=4,
        )
        texts = [f"sentence {i}" for i in range(5)]
        vectors = await model.predict_many(texts)
        assert ep.stats.total == 1
        request = ep.stats.recent[-1]
        assert request.path == "/v1/embeddings"
        assert orjson.loads(request.body) == {"model": "mini", "input": texts, "dimensions": 4}
        assert [len(v) for v in vectors] == [4] * 5
        assert vectors[0] != vectors[1]
        assert await model.predict("sentence 3") == vectors[3]  # deterministic per text


async def test_chat_sends_one_conversation_per_request_with_the_system_prompt(registry):
    async with FakeEndpoint() as ep:
        model = registry.register(
            "chat",
            provider="openai",
            endpoint=f"{ep.url}/v1",
            remote_name="tiny",
            task="text_generation",
            system_prompt="Be brief.",
            parameters={"temperature": 0.0},
            api_key="sk-test-key-123456",
            batch_size=8,
        )
        out = await model.predict_many(["hello", "world"])
        assert ep.stats.total == 2
        bodies = [orjson.loads(r.body) for r in ep.stats.recent[-2:]]
        assert {b["messages"][1]["content"] for b in bodies} == {"hello", "world"}
        assert bodies[0]["messages"][0] == {"role": "system", "content": "Be brief."}
        assert bodies[0]["temperature"] == 0.0 and bodies[0]["model"] == "tiny"
        assert ep.stats.recent[-1].headers["Authorization"] == "Bearer sk-test-key-123456"
        assert all(isinstance(o, str) and o for o in out)
        assert out[0] != out[1]


async def test_non_string_embedding_input_is_invalid(registry):
    model = registry.register(
        "emb", provider="openai", endpoint="http://127.0.0.1:9/v1", task="embedding"
    )
    with pytest.raises(InvalidInput, match="non-empty string, got 42"):
        await model.predict(42)


def test_regression_is_not_an_openai_task():
    with pytest.raises(ConfigurationError, match="not 'regression'"):
        ModelRegistry().register("r", provider="openai", endpoint="http://x/v1", task="regression")


async def test_http_provider_with_custom_request_and_response(registry):
    async with FakeEndpoint() as ep:
        model = registry.register(
            "custom",
            provider="http",
            endpoint=ep.url,
            path="echo",
            batch_size=4,
            batch_timeout=0.05,
            request_builder=lambda xs: {"items": xs},
            response_parser=lambda body, n: [f"got {x}" for x in body["items"]],
        )
        assert await model.predict_many([1, 2, 3]) == ["got 1", "got 2", "got 3"]
        assert orjson.loads(ep.stats.recent[-1].body) == {"items": [1, 2, 3]}


async def test_http_provider_defaults(registry):
    async with FakeEndpoint() as ep:
        model = registry.register("plain", provider="http", endpoint=ep.url, path="/predict")
        assert await model.predict(21) == 42
