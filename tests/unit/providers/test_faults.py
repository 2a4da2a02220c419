"""Failure handling of the HTTP providers against a fault-injecting fake endpoint.

The endpoint is devtools.fake_endpoint, a test double: real model servers
cannot be made to answer 429, reset a connection or send a broken body on
command. Real-server behaviour is covered in tests/integration.
"""

import time

import pytest

from devtools.fake_endpoint import FakeEndpoint, Fault
from faust_inference import (
    ClientError,
    InferenceTimeout,
    RateLimited,
    ResponseDecodeError,
    RetriesExhausted,
    ServerError,
    TransportError,
)


def kserve(registry, url, name="fraud", **settings):
    settings.setdefault("retries", {"max_retries": 3, "initial_backoff": 0.01, "jitter": 0})
    return registry.register(name, provider="kserve", endpoint=url, **settings)


@pytest.mark.asyncio
async def test_429_is_retried_after_the_servers_retry_after(registry):
    async with FakeEndpoint() as ep:
        model = kserve(registry, ep.url)
        ep.script(Fault.http(429, retry_after=1))
        started = time.monotonic()
        out = await model.predict([1.0, 2.0])
        waited = time.monotonic() - started
        assert len(out) == 2 and abs(sum(out) - 1) < 1e-9
        assert waited >= 1.0  # the 10 ms backoff gave way to Retry-After: 1
        assert ep.stats.total == 2


@pytest.mark.asyncio
async def test_5xx_then_success(registry):
    async with FakeEndpoint() as ep:
        model = kserve(registry, ep.url)
        ep.script(503, 500)
        assert len(await model.predict([0.5])) == 2
        assert ep.stats.total == 3


@pytest.mark.asyncio
async def test_persistent_5xx_exhausts_retries(registry):
    async with FakeEndpoint() as ep:
        model = kserve(registry, ep.url, retries={"max_retries": 2, "initial_backoff": 0.001})
        ep.script(500, 502, 503)
        with pytest.raises(RetriesExhausted) as info:
            await model.predict([0.5])
        assert isinstance(info.value.last_error, ServerError)
        assert info.value.last_error.status == 503 and info.value.attempts == 3


@pytest.mark.asyncio
async def test_a_stalled_call_times_out_and_the_retry_succeeds(registry):
    async with FakeEndpoint() as ep:
        model = kserve(registry, ep.url, timeout=0.2)
        ep.script("stall")
        assert len(await model.predict([0.5])) == 2
        assert ep.stats.total == 2
        model2 = kserve(registry, ep.url, "fraud2", timeout=0.1, retries=0)
        ep.script("stall")
        with pytest.raises(InferenceTimeout, match="within 0.1s"):
            await model2.predict([0.5])


@pytest.mark.asyncio
async def test_malformed_json_is_not_retried(registry):
    async with FakeEndpoint() as ep:
        model = kserve(registry, ep.url)
        ep.script("malformed")
        with pytest.raises(ResponseDecodeError, match="not JSON"):
            await model.predict([0.5])
        assert ep.stats.total == 1


@pytest.mark.asyncio
async def test_connection_reset_is_retried(registry):
    async with FakeEndpoint() as ep:
        model = kserve(registry, ep.url)
        ep.script("reset", "reset")
        assert len(await model.predict([0.5])) == 2
        assert ep.stats.total == 3


@pytest.mark.asyncio
async def test_connection_refused_is_a_retryable_transport_error(registry):
    model = kserve(
        registry, "http://127.0.0.1:9", retries={"max_retries": 1, "initial_backoff": 0.001}
    )
    with pytest.raises(RetriesExhausted) as info:
        await model.predict([0.5])
    assert isinstance(info.value.last_error, TransportError)


@pytest.mark.asyncio
async def test_400_names_the_problem_and_is_not_retried(registry):
    async with FakeEndpoint() as ep:
        model = kserve(registry, ep.url, max_concurrency=1)
        ep.script(Fault.http(400, message="input 'features' has the wrong shape"))
        with pytest.raises(ClientError, match="400.*wrong shape") as info:
            await model.predict([0.5])
        assert info.value.status == 400 and ep.stats.total == 1


@pytest.mark.asyncio
async def test_rate_limited_errors_carry_retry_after_when_retries_are_off(registry):
    async with FakeEndpoint() as ep:
        model = kserve(registry, ep.url, retries=0)
        ep.script(Fault.http(429, retry_after=3))
        with pytest.raises(RateLimited) as info:
            await model.predict([0.5])
        assert info.value.retry_after == 3.0


@pytest.mark.asyncio
async def test_api_keys_never_reach_error_messages(registry):
    secret = "sk-test-0123456789abcdef"
    async with FakeEndpoint() as ep:
        model = registry.register(
            "gpt",
            provider="openai",
            endpoint=f"{ep.url}/v1",
            task="text_generation",
            api_key=secret,
            retries=0,
        )
        ep.script(Fault.http(401, message=f"Incorrect API key provided: {secret}"))
        with pytest.raises(ClientError) as info:
            await model.predict("hi")
        assert secret not in str(info.value) and "401" in str(info.value)
        assert ep.stats.recent[-1].headers.get("Authorization") == f"Bearer {secret}"
