"""Request format, SigV4 signing and error mapping of the bedrock provider.

Against tests/unit/providers/cloud_fake.py, a fake endpoint: Bedrock cannot be
reached from the test machines. Answers follow the Bedrock Runtime API
reference (Converse, InvokeModel); every signature is verified server-side
with botocore from the same static test credentials.
"""

import threading

import pytest

from faust_inference import ClientError, ConfigurationError, InvalidInput, RateLimited, ServerError
from faust_inference.exceptions import RetriesExhausted
from faust_inference.providers.classify import aws_error

from .cloud_fake import FakeCloud, Received, json_reply, verify_sigv4

KEY_ID, SECRET, TOKEN = (
    "AKIDFAKEFAKEFAKE",
    "fake/secret+key/0123456789abcdefghijklm",
    "fake-session-token",
)
REGION = "eu-central-1"
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


def add_connection(registry, **extra):
    registry.connections.add(
        name="bedrock-test",
        provider="bedrock",
        region=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        aws_session_token=TOKEN,
        **extra,
    )


def bedrock(registry, cloud, name, **settings):
    """A model on the test connection, pointed at the fake cloud."""
    add_connection(registry)
    return registry.register(name, connection="bedrock-test", endpoint=cloud.url, **settings)


def verify(req):
    return verify_sigv4(
        req, access_key=KEY_ID, secret_key=SECRET, token=TOKEN, service="bedrock", region=REGION
    )


def converse_answer(req: Received):
    """Converse response shape: output.message.content[].text, stopReason, usage."""
    body = req.json
    text = body["messages"][-1]["content"][0]["text"]
    return json_reply(
        {
            "output": {"message": {"role": "assistant", "content": [{"text": f"echo: {text}"}]}},
            "stopReason": "end_turn",
            "usage": {
                "inputTokens": len(text.split()),
                "outputTokens": len(text.split()) + 1,
                "totalTokens": 2 * len(text.split()) + 1,
            },
            "metrics": {"latencyMs": 12},
        }
    )


async def test_converse_request_is_signed_and_shaped_like_the_api(registry):
    async with FakeCloud(converse_answer) as cloud:
        model = bedrock(
            registry,
            cloud,
            "claude",
            task="text_generation",
            remote_name=CLAUDE,
            system_prompt="Be brief.",
            parameters={"maxTokens": 50},
            retries=0,
        )
        out = await model.predict_many(["hello there world"])
        assert out == ["echo: hello there world"]
        req = cloud.last
        assert req.method == "POST"
        assert req.path == "/model/anthropic.claude-3-haiku-20240307-v1:0/converse"
        assert req.json == {
            "messages": [{"role": "user", "content": [{"text": "hello there world"}]}],
            "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 50},
        }
        assert req.headers["Content-Type"] == "application/json"
        assert req.headers["X-Amz-Security-Token"] == TOKEN
        signed = verify(req)
        assert {"host", "content-type", "x-amz-date", "x-amz-security-token"} <= set(signed)


async def test_usage_is_reported_from_converse(registry):
    async with FakeCloud(converse_answer) as cloud:
        model = bedrock(
            registry,
            cloud,
            "claude",
            task="text_generation",
            remote_name=CLAUDE,
        )
        predictions = await model.runner.provider.infer(["one two three"])
        assert predictions.outputs == ["echo: one two three"]
        assert (predictions.usage.input_tokens, predictions.usage.output_tokens) == (3, 4)


async def test_a_tampered_request_fails_verification(registry):
    async with FakeCloud(converse_answer) as cloud:
        model = bedrock(
            registry,
            cloud,
            "claude",
            task="text_generation",
            remote_name=CLAUDE,
        )
        await model.predict("hi")
        req = cloud.last
        req.body = req.body.replace(b"hi", b"ho")
        with pytest.raises(AssertionError, match="signature mismatch"):
            verify(req)


def titan_answer(req: Received):
    """Titan embeddings InvokeModel response: embedding, inputTextTokenCount; token headers."""
    text = req.json["inputText"]
    return json_reply(
        {"embedding": [float(len(text)), float(text.count(" "))], "inputTextTokenCount": 2},
        headers={
            "X-Amzn-Bedrock-Input-Token-Count": str(len(text.split())),
            "X-Amzn-Bedrock-Output-Token-Count": "0",
        },
    )


async def test_titan_embeddings_invoke_one_text_per_call(registry):
    async with FakeCloud(titan_answer) as cloud:
        model = bedrock(
            registry,
            cloud,
            "titan",
            task="embedding",
            remote_name="amazon.titan-embed-text-v2:0",
            batch_size=4,
            batch_timeout=0.05,
            parameters={"dimensions": 256},
        )
        vectors = await model.predict_many(["a b c", "hello"])
        assert vectors == [[5.0, 2.0], [5.0, 0.0]]
        assert len(cloud.requests) == 2  # Titan takes one text per call
        assert {r.path for r in cloud.requests} == {"/model/amazon.titan-embed-text-v2:0/invoke"}
        assert cloud.requests[0].json in (
            {"inputText": "a b c", "dimensions": 256},
            {"inputText": "hello", "dimensions": 256},
        )
        for req in cloud.requests:
            verify(req)
        usage = (await model.runner.provider.infer(["x y z"])).usage
        assert (usage.input_tokens, usage.output_tokens) == (3, 0)


def cohere_answer(req: Received):
    """Cohere embed InvokeModel response: embeddings (one per text), id, texts."""
    body = req.json
    return json_reply(
        {"id": "x", "texts": body["texts"], "embeddings": [[float(len(t))] for t in body["texts"]]}
    )


async def test_cohere_embeddings_are_batched(registry):
    async with FakeCloud(cohere_answer) as cloud:
        model = bedrock(
            registry,
            cloud,
            "cohere",
            task="embedding",
            remote_name="cohere.embed-english-v3",
            batch_size=8,
            batch_timeout=0.05,
            input_type="search_query",
        )
        assert await model.predict_many(["a", "bb", "ccc"]) == [[1.0], [2.0], [3.0]]
        assert len(cloud.requests) == 1
        assert cloud.last.json == {"texts": ["a", "bb", "ccc"], "input_type": "search_query"}


async def test_native_invoke_body_and_the_default_credential_chain(registry, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")

    def answer(req):
        return json_reply({"generation": req.json["prompt"].upper(), "stop_reason": "stop"})

    async with FakeCloud(answer) as cloud:
        model = registry.register(
            "llama",
            provider="bedrock",
            endpoint=cloud.url,
            api="invoke",
            remote_name="meta.llama3-8b-instruct-v1:0",
        )
        out = await model.predict({"prompt": "hi", "max_gen_len": 5})
        assert out == {"generation": "HI", "stop_reason": "stop"}
        assert cloud.last.json == {"prompt": "hi", "max_gen_len": 5}
        assert "X-Amz-Security-Token" not in cloud.last.headers
        verify_sigv4(
            cloud.last,
            access_key=KEY_ID,
            secret_key=SECRET,
            token=None,
            service="bedrock",
            region="us-west-2",
        )


async def test_credentials_are_read_in_a_thread_once_not_per_request(registry):
    async with FakeCloud(converse_answer) as cloud:
        model = bedrock(
            registry,
            cloud,
            "claude",
            task="text_generation",
            remote_name=CLAUDE,
            max_concurrency=4,
        )
        signer = model.runner.provider.endpoint.auth
        threads = []
        source = signer._source
        original = source.get_frozen_credentials

        def spy():
            threads.append(threading.get_ident())
            return original()

        source.get_frozen_credentials = spy
        await model.predict_many([f"q{i}" for i in range(6)])
        assert len(cloud.requests) == 6
        assert signer.refreshes == 1 and len(threads) == 1
        assert threads[0] != threading.get_ident()  # not on the event loop's thread


class _Expiring:
    """botocore RefreshableCredentials' interface: refresh_needed() and get_frozen_credentials()."""

    def __init__(self):
        from botocore.credentials import ReadOnlyCredentials

        self.needed = False
        self.calls = 0
        self.frozen = ReadOnlyCredentials(KEY_ID, SECRET, TOKEN)

    def refresh_needed(self):
        return self.needed

    def get_frozen_credentials(self):
        self.calls += 1
        self.needed = False
        return self.frozen


async def test_credentials_near_expiry_are_refreshed(registry):
    source = _Expiring()
    async with FakeCloud(converse_answer) as cloud:
        add_connection(registry, credentials=source)
        model = registry.register(
            "claude",
            connection="bedrock-test",
            endpoint=cloud.url,
            task="text_generation",
            remote_name=CLAUDE,
        )
        await model.predict("a")
        await model.predict("b")
        assert source.calls == 1
        source.needed = True
        await model.predict("c")
        assert source.calls == 2


@pytest.mark.parametrize(
    ("status", "code", "cls", "retryable"),
    [
        (429, "ThrottlingException", RateLimited, True),
        (429, "ModelNotReadyException", ServerError, True),
        (503, "ServiceUnavailableException", ServerError, True),
        (500, "InternalServerException", ServerError, True),
        (408, "ModelTimeoutException", ServerError, True),
        (403, "AccessDeniedException", ClientError, False),
        (403, "UnrecognizedClientException", ClientError, False),
        (400, "ValidationException", ClientError, False),
        (400, "ServiceQuotaExceededException", ClientError, False),
        (424, "ModelErrorException", ClientError, False),
    ],
)
def test_bedrock_error_codes_map_to_our_errors(status, code, cls, retryable):
    body = b'{"message": "details from the service"}'
    headers = {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    error = aws_error(status, headers, body, "https://h/model/m/converse", ())
    assert type(error) is cls and error.retryable is retryable and error.status == status
    assert str(error).startswith(code) and "details from the service" in str(error)


async def test_throttling_is_retried_and_auth_failure_is_not(registry):
    calls = {"n": 0}

    def flaky(req):
        calls["n"] += 1
        if calls["n"] == 1:
            return json_reply(
                {"message": "Too many requests, please wait before trying again."},
                status=429,
                headers={"x-amzn-ErrorType": "ThrottlingException:x"},
            )
        if req.json["messages"][0]["content"][0]["text"] == "forbidden":
            return json_reply(
                {"message": f"The security token included in the request is invalid. {TOKEN}"},
                status=403,
                headers={"x-amzn-ErrorType": "UnrecognizedClientException:x"},
            )
        return converse_answer(req)

    async with FakeCloud(flaky) as cloud:
        model = bedrock(
            registry,
            cloud,
            "claude",
            task="text_generation",
            remote_name=CLAUDE,
            retries={"max_retries": 2, "initial_backoff": 0.01, "jitter": 0},
        )
        assert await model.predict("ok") == "echo: ok"
        assert len(cloud.requests) == 2
        with pytest.raises(ClientError) as info:
            await model.predict("forbidden")
        assert len(cloud.requests) == 3  # not retried
        assert TOKEN not in str(info.value) and SECRET not in str(info.value)
        assert "UnrecognizedClientException" in str(info.value)


async def test_persistent_throttling_exhausts_retries(registry):
    def throttled(req):
        return json_reply(
            {"message": "slow down"},
            status=429,
            headers={"x-amzn-ErrorType": "ThrottlingException:x"},
        )

    async with FakeCloud(throttled) as cloud:
        model = bedrock(
            registry,
            cloud,
            "claude",
            task="text_generation",
            remote_name=CLAUDE,
            retries={"max_retries": 1, "initial_backoff": 0.01, "jitter": 0},
        )
        with pytest.raises(RetriesExhausted) as info:
            await model.predict("x")
        assert isinstance(info.value.last_error, RateLimited)


def test_missing_region_and_missing_botocore_are_configuration_errors(monkeypatch):
    from faust_inference import ModelRegistry

    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    registry = ModelRegistry()
    registry.connections.add(name="c", aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)
    with pytest.raises(ConfigurationError, match="needs an AWS region"):
        registry.register("m", provider="bedrock", connection="c", task="text_generation")
    monkeypatch.setitem(__import__("sys").modules, "botocore.session", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'faust-inference\[aws\]'"):
        registry.register("m2", provider="bedrock", connection="c", region="us-east-1")


def test_repr_of_a_bedrock_model_holds_no_secret():
    from faust_inference import ModelRegistry

    registry = ModelRegistry()
    add_connection(registry)
    model = registry.register(
        "claude", connection="bedrock-test", task="text_generation", remote_name=CLAUDE
    )
    text = repr(model.settings) + repr(model) + repr(model.runner.provider.endpoint)
    assert SECRET not in text and TOKEN not in text and KEY_ID not in text
    assert "bedrock-runtime.eu-central-1.amazonaws.com" in model.runner.provider.url


async def test_message_lists_are_wrapped_in_text_blocks_and_bad_inputs_never_sent(registry):
    async with FakeCloud(converse_answer) as cloud:
        model = bedrock(registry, cloud, "claude", task="text_generation", remote_name=CLAUDE)
        history = [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"text": "hello"}]},
            {"role": "user", "content": "bye now"},
        ]
        assert await model.predict(history) == "echo: bye now"
        assert cloud.last.json["messages"] == [
            {"role": "user", "content": [{"text": "hi"}]},
            {"role": "assistant", "content": [{"text": "hello"}]},
            {"role": "user", "content": [{"text": "bye now"}]},
        ]
        sent = len(cloud.requests)
        with pytest.raises(InvalidInput, match="Converse input"):
            await model.predict(42)
        assert len(cloud.requests) == sent
