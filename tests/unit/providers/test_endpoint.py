"""The one Endpoint: size cap, 200-with-error answers, readiness, 404 as an outage, options.

Served by FakeCloud, a test double on 127.0.0.1 (tests/unit/providers/cloud_fake.py):
real model servers cannot be made to answer 50 MB, a 200 with an error, or a
model that vanishes mid-run on command. Readiness against a real MLServer is
in tests/integration/test_mlserver.py.
"""

from __future__ import annotations

import pytest

from faust_inference import (
    ConfigurationError,
    ModelRegistry,
    ResponseDecodeError,
    RetriesExhausted,
    TransportError,
)
from faust_inference.exceptions import (
    EndpointNotReady,
    ModelNotFound,
    ModelUnavailable,
    ResponseTooLarge,
)

from .cloud_fake import FakeCloud, json_reply

FAST = {"max_retries": 2, "initial_backoff": 0.001, "jitter": 0}


async def test_an_answer_over_max_response_bytes_fails_clearly_and_is_not_retried(registry):
    big = {"outputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": ["x" * 300_000]}]}
    async with FakeCloud(lambda req: json_reply(big)) as cloud:
        model = registry.register(
            "m", provider="kserve", endpoint=cloud.url, max_response_bytes=100_000, retries=FAST
        )
        with pytest.raises(ResponseTooLarge, match=r"max_response_bytes=100000") as info:
            await model.predict([1.0])
        assert not info.value.retryable and len(cloud.requests) == 1
        roomy = registry.register(
            "roomy",
            provider="kserve",
            endpoint=cloud.url,
            remote_name="m",
            max_response_bytes=1_000_000,
        )
        assert len(await roomy.predict([1.0])) == 300_000


def test_max_response_bytes_defaults_to_32_mib():
    model = ModelRegistry().register("m", provider="kserve", endpoint="http://127.0.0.1:9")
    assert model.settings.max_response_bytes == 32 * 1024 * 1024
    assert model.runner.provider.endpoint.max_response_bytes == 32 * 1024 * 1024


async def test_a_200_with_an_error_keeps_the_servers_words(registry):
    async with FakeCloud(
        lambda req: json_reply({"error": "model fraud is still loading"})
    ) as cloud:
        model = registry.register("fraud", provider="kserve", endpoint=cloud.url, retries=0)
        with pytest.raises(ResponseDecodeError, match="no 'outputs' list.*still loading"):
            await model.predict([1.0])
        chat = registry.register(
            "chat", provider="openai", endpoint=cloud.url, task="text_generation", retries=0
        )
        with pytest.raises(ResponseDecodeError, match="unexpected chat answer.*still loading"):
            await chat.predict("hi")


def test_an_unknown_option_lists_the_core_settings_and_the_closest_name():
    with pytest.raises(ConfigurationError) as info:
        ModelRegistry().register(
            "m", provider="kserve", endpoint="http://127.0.0.1:9", max_concurency=4
        )
    message = str(info.value)
    assert "max_concurency" in message and "did you mean 'max_concurrency'?" in message
    assert "input_name" in message and "batch_size" in message and "timeout" in message


@pytest.mark.parametrize(
    "suffix",
    ["/v2", "/v2/", "/v2/models", "/v2/models/fraud", "/v2/models/fraud/versions/v1/infer"],
)
def test_a_kserve_endpoint_with_the_protocols_path_is_refused_naming_the_root(suffix):
    with pytest.raises(ConfigurationError, match=r"endpoint='http://127.0.0.1:8080'"):
        ModelRegistry().register(
            "fraud", provider="kserve", endpoint="http://127.0.0.1:8080" + suffix
        )


async def test_a_404_for_the_model_during_the_run_is_a_retried_outage(registry):
    answers = iter([(404, b'{"error": "Model fraud not found"}')] * 2)

    def handler(req):
        status, body = next(answers, (200, None))
        if body is not None:
            return status, {"Content-Type": "application/json"}, body
        return json_reply(
            {"outputs": [{"name": "p", "shape": [1, 2], "datatype": "FP64", "data": [0.2, 0.8]}]}
        )

    async with FakeCloud(handler) as cloud:
        model = registry.register("fraud", provider="kserve", endpoint=cloud.url, retries=FAST)
        assert await model.predict([1.0]) == [0.2, 0.8]
        assert len(cloud.requests) == 3
    async with FakeCloud(lambda req: json_reply({"error": "Model fraud not found"}, 404)) as cloud:
        gone = registry.register("gone", provider="kserve", endpoint=cloud.url, retries=FAST)
        with pytest.raises(RetriesExhausted) as info:
            await gone.predict([1.0])
        assert isinstance(info.value.last_error, ModelUnavailable)
        assert info.value.last_error.retryable and info.value.last_error.status == 404


async def test_kserve_readiness_names_the_url_and_the_fix():
    def handler(req):
        if req.path == "/v2/models/fraud/versions/v1/ready":
            return 200, {}, b""
        if req.path == "/v2/models/loading/ready":
            return 400, {}, b""
        return json_reply({"error": "Model nope not found"}, 404)

    async with FakeCloud(handler) as cloud:
        registry = ModelRegistry()
        await registry.register(
            "fraud", provider="kserve", endpoint=cloud.url, version="v1"
        ).runner.provider.ready()
        missing = registry.register("nope", provider="kserve", endpoint=cloud.url)
        with pytest.raises(ModelNotFound) as info:
            await missing.runner.provider.ready()
        assert f"{cloud.url}/v2/models/nope/ready answered 404" in str(info.value)
        assert "Model nope not found" in str(info.value) and "without /v2" in str(info.value)
        loading = registry.register("loading", provider="kserve", endpoint=cloud.url)
        with pytest.raises(EndpointNotReady):
            await loading.runner.provider.ready()
        await registry.aclose()
    down = ModelRegistry()
    with pytest.raises(TransportError):
        await down.register(
            "x", provider="kserve", endpoint="http://127.0.0.1:9"
        ).runner.provider.ready()
    await down.aclose()


async def test_openai_readiness_wants_the_model_in_the_list():
    def handler(req):
        if req.path == "/v1/models":
            return json_reply({"object": "list", "data": [{"id": "all-MiniLM-L6-v2"}]})
        if req.path == "/empty/models":
            return json_reply({"object": "list", "data": []})
        return 404, {}, b"Not Found"

    async with FakeCloud(handler) as cloud:
        registry = ModelRegistry()
        ok = registry.register(
            "all-MiniLM-L6-v2", provider="openai", endpoint=f"{cloud.url}/v1", task="embedding"
        )
        await ok.runner.provider.ready()
        other = registry.register(
            "gpt", provider="openai", endpoint=f"{cloud.url}/v1", task="text_generation"
        )
        with pytest.raises(ModelNotFound, match=r"lists all-MiniLM-L6-v2, not 'gpt'"):
            await other.runner.provider.ready()
        anything = registry.register(
            "any", provider="openai", endpoint=f"{cloud.url}/empty", task="text_generation"
        )
        await anything.runner.provider.ready()  # lists none: serves whatever it is asked
        wrong = registry.register("w", provider="openai", endpoint=cloud.url, task="embedding")
        with pytest.raises(ModelNotFound, match=rf"{cloud.url}/models answered 404.*/v1"):
            await wrong.runner.provider.ready()
        skipped = registry.register(
            "s", provider="openai", endpoint=cloud.url, task="embedding", check_ready=False
        )
        await skipped.runner.provider.ready()
        await registry.aclose()


async def test_userinfo_becomes_a_basic_header_and_leaves_the_url(registry):
    async with FakeCloud(lambda req: json_reply({"outputs": [1]})) as cloud:
        url = cloud.url.replace("http://", "http://bob:pw-123@")
        model = registry.register("m", provider="http", endpoint=url)
        assert await model.predict(0) == 1
        assert cloud.last.headers["Authorization"] == "Basic Ym9iOnB3LTEyMw=="
        assert "pw-123" not in repr(model.runner.provider.endpoint)
        assert "bob" not in model.runner.provider.endpoint.url
