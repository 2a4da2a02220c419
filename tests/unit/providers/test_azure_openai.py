"""Request format, authentication and error mapping of the azure_openai provider.

Against tests/unit/providers/cloud_fake.py, a fake endpoint: Azure cannot be
reached from the test machines. Paths, the api-version query, the api-key
header and the bodies follow the Azure OpenAI data-plane REST reference;
answers have the OpenAI chat/embeddings shape with usage.
"""

import threading
import time

import pytest
from azure.core.credentials import AccessToken

from faust_inference import ClientError, ConfigurationError, ModelRegistry, RateLimited, ServerError
from faust_inference.providers.auth.entra import COGNITIVE_SCOPE
from faust_inference.providers.classify import azure_error

from .cloud_fake import FakeCloud, Received, json_reply

KEY = "azure-key-0123456789abcdef0123456789"


def openai_answer(req: Received):
    body = req.json
    if "input" in body:
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0]}
            for i, t in enumerate(body["input"])
        ]
        tokens = sum(len(t.split()) for t in body["input"])
        return json_reply(
            {
                "object": "list",
                "data": data[::-1],
                "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
    text = body["messages"][-1]["content"]
    return json_reply(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text[::-1]},
                }
            ],
            "usage": {
                "prompt_tokens": len(text),
                "completion_tokens": 2,
                "total_tokens": len(text) + 2,
            },
        }
    )


async def test_chat_goes_to_the_deployment_with_api_version_and_api_key(registry):
    async with FakeCloud(openai_answer) as cloud:
        registry.connections.add(
            name="azure-prod",
            provider="azure_openai",
            endpoint=cloud.url,
            api_key=KEY,
            api_version="2024-06-01",
        )
        model = registry.register(
            "summarize",
            connection="azure-prod",
            remote_name="gpt4o mini",
            task="text_generation",
            system_prompt="Be brief.",
        )
        assert await model.predict("hello") == "olleh"
        req = cloud.last
        assert req.method == "POST"
        assert (
            req.path == "/openai/deployments/gpt4o%20mini/chat/completions?api-version=2024-06-01"
        )
        assert req.headers["api-key"] == KEY and "Authorization" not in req.headers
        assert req.json == {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hello"},
            ]
        }
        usage = (await model.runner.provider.infer(["abc"])).usage
        assert (usage.input_tokens, usage.output_tokens) == (3, 2)


async def test_embeddings_are_batched_and_ordered(registry, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    async with FakeCloud(openai_answer) as cloud:
        model = registry.register(
            "embed",
            provider="azure_openai",
            endpoint=cloud.url,
            deployment="emb-small",
            task="embedding",
            batch_size=8,
            batch_timeout=0.05,
            dimensions=2,
        )
        assert await model.predict_many(["a", "bb", "ccc"]) == [[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]]
        assert len(cloud.requests) == 1
        assert cloud.last.path == "/openai/deployments/emb-small/embeddings?api-version=2024-10-21"
        assert cloud.last.json == {"input": ["a", "bb", "ccc"], "dimensions": 2}
        assert cloud.last.headers["api-key"] == KEY


class FakeTokenCredential:
    """azure-identity's TokenCredential interface: get_token(*scopes) -> AccessToken."""

    def __init__(self, lifetime=3600.0):
        self.lifetime = lifetime
        self.calls = []

    def get_token(self, *scopes, **kwargs):
        self.calls.append((scopes, threading.get_ident()))
        return AccessToken(f"entra-token-{len(self.calls)}", int(time.time() + self.lifetime))


async def test_entra_id_token_is_fetched_in_a_thread_and_cached(registry):
    credential = FakeTokenCredential()
    async with FakeCloud(openai_answer) as cloud:
        registry.connections.add(
            name="entra", provider="azure_openai", endpoint=cloud.url, credentials=credential
        )
        model = registry.register(
            "chat",
            connection="entra",
            task="text_generation",
            remote_name="gpt-4o",
            max_concurrency=4,
        )
        await model.predict_many(["a", "b", "c", "d"])
        assert [r.headers["Authorization"] for r in cloud.requests] == ["Bearer entra-token-1"] * 4
        assert "api-key" not in cloud.last.headers
        assert len(credential.calls) == 1
        scopes, thread = credential.calls[0]
        assert scopes == (COGNITIVE_SCOPE,) and thread != threading.get_ident()


async def test_a_token_near_expiry_is_refreshed(registry):
    credential = FakeTokenCredential(lifetime=200)  # inside the 5-minute refresh margin
    async with FakeCloud(openai_answer) as cloud:
        registry.connections.add(
            name="entra", provider="azure_openai", endpoint=cloud.url, credentials=credential
        )
        model = registry.register("chat", connection="entra", task="text_generation")
        await model.predict("a")
        await model.predict("b")
        assert [r.headers["Authorization"] for r in cloud.requests] == [
            "Bearer entra-token-1",
            "Bearer entra-token-2",
        ]


async def test_429_honours_retry_after_ms_and_content_filter_is_not_retried(registry):
    calls = []

    def answer(req):
        calls.append(1)
        if len(calls) == 1:
            return json_reply(
                {
                    "error": {
                        "code": "429",
                        "message": "Requests to the ChatCompletions_Create Operation have exceeded call rate limit. Please retry after 1 second.",
                    }
                },
                status=429,
                headers={"retry-after-ms": "200"},
            )
        if req.json["messages"][-1]["content"] == "bad":
            return json_reply(
                {
                    "error": {
                        "code": "content_filter",
                        "message": "The response was filtered",
                        "status": 400,
                    }
                },
                status=400,
            )
        return openai_answer(req)

    async with FakeCloud(answer) as cloud:
        model = registry.register(
            "chat",
            provider="azure_openai",
            endpoint=cloud.url,
            api_key=KEY,
            task="text_generation",
            retries={"max_retries": 2, "initial_backoff": 0.001, "jitter": 0},
        )
        started = time.monotonic()
        assert await model.predict("ok") == "ko"
        assert time.monotonic() - started >= 0.2
        with pytest.raises(ClientError, match="content_filter") as info:
            await model.predict("bad")
        assert len(cloud.requests) == 3 and KEY not in str(info.value)


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "retryable", "retry_after"),
    [
        (
            429,
            {"retry-after-ms": "1500", "Retry-After": "2"},
            {"error": {"code": "429"}},
            RateLimited,
            True,
            2.0,
        ),
        (429, {"x-ms-retry-after-ms": "250"}, {"error": {"code": "429"}}, RateLimited, True, 0.25),
        (
            401,
            {},
            {"error": {"code": "401", "message": "Access denied due to invalid subscription key"}},
            ClientError,
            False,
            None,
        ),
        (
            404,
            {},
            {"error": {"code": "DeploymentNotFound", "message": "x"}},
            ClientError,
            False,
            None,
        ),
        (
            503,
            {},
            {"error": {"code": "ServiceUnavailable", "message": "x"}},
            ServerError,
            True,
            None,
        ),
    ],
)
def test_azure_errors_map_to_our_errors(status, headers, body, cls, retryable, retry_after):
    import orjson

    error = azure_error(status, headers, orjson.dumps(body), "https://x/openai/deployments/d", ())
    assert type(error) is cls and error.retryable is retryable and error.retry_after == retry_after


def test_endpoint_is_required_and_azure_identity_is_optional(monkeypatch):
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_ENDPOINT"):
        ModelRegistry().register("c", provider="azure_openai", task="text_generation")
    monkeypatch.setitem(__import__("sys").modules, "azure.identity", None)
    with pytest.raises(ConfigurationError, match=r"faust-inference\[azure\]"):
        ModelRegistry().register(
            "c", provider="azure_openai", endpoint="https://x.openai.azure.com"
        )
    # A key needs no azure-identity at all.
    ModelRegistry().register(
        "k", provider="azure_openai", endpoint="https://x.openai.azure.com", api_key=KEY
    )


async def test_token_failures_are_retryable_and_an_old_valid_token_is_kept():
    from faust_inference import TransportError
    from faust_inference.providers import TokenCache

    outcomes = [("t1", time.time() + 100), RuntimeError(f"secret {KEY}")]

    def fetch():
        outcome = outcomes.pop(0) if outcomes else RuntimeError("down")
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    cache = TokenCache(fetch, refresh_margin=300)  # t1 is always "near expiry"
    assert await cache.token() == "t1"
    assert await cache.token() == "t1"  # refresh failed; t1 has not expired yet
    assert cache.fetches == 2
    empty = TokenCache(fetch)
    with pytest.raises(TransportError) as info:
        await empty.token()
    assert info.value.retryable and KEY not in str(info.value)
    assert "RuntimeError" in str(info.value)
