"""Request format, authentication and error mapping of the vertex and gemini providers.

Against tests/unit/providers/cloud_fake.py, a fake endpoint: Google Cloud
cannot be reached from the test machines. Paths and bodies follow the Vertex
AI REST reference (endpoints.predict, generateContent) and the Gemini API
reference (generateContent, embedContent, batchEmbedContents). The OAuth flow
is google-auth's real one: a service-account key made here signs a JWT that
the fake token endpoint checks and answers with an access token.
"""

import json
import time
from urllib.parse import parse_qs

import pytest

from faust_inference import ClientError, ConfigurationError, ModelRegistry, RateLimited, ServerError
from faust_inference.exceptions import ResponseDecodeError, RetriesExhausted
from faust_inference.providers.auth.google import CLOUD_PLATFORM
from faust_inference.providers.classify import google_error

from .cloud_fake import FakeCloud, Received, json_reply

API_KEY = "AIzaFakeGeminiKey0123456789abcdefghijk"


@pytest.fixture(scope="module")
def rsa_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


class GoogleFake:
    """Token endpoint plus Vertex prediction, in one fake server."""

    def __init__(self, public_key, predict):
        self.public_key = public_key
        self.predict = predict
        self.tokens_issued = 0

    def __call__(self, req: Received):
        if req.path == "/token":
            from google.auth import jwt

            form = parse_qs(req.body.decode())
            assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
            claims = jwt.decode(
                form["assertion"][0], certs=self.public_key, verify=True, audience=None
            )
            assert claims["iss"] == "faust@acme-ml.iam.gserviceaccount.com"
            assert claims["scope"] == CLOUD_PLATFORM
            self.tokens_issued += 1
            return json_reply(
                {
                    "access_token": f"ya29.fake-{self.tokens_issued}",
                    "expires_in": 3600,
                    "token_type": "Bearer",
                }
            )
        assert req.headers["Authorization"] == f"Bearer ya29.fake-{self.tokens_issued}"
        return self.predict(req)


def service_account_file(tmp_path, private_key, token_uri):
    path = tmp_path / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "acme-ml",
                "private_key_id": "k1",
                "private_key": private_key,
                "client_email": "faust@acme-ml.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": token_uri,
            }
        )
    )
    return str(path)


def tabular_model(req: Received):
    """endpoints.predict response: predictions, deployedModelId, model, modelVersionId."""
    instances = req.json["instances"]
    return json_reply(
        {
            "predictions": [[1 - sum(r) / 10, sum(r) / 10] for r in instances],
            "deployedModelId": "555",
            "model": "projects/1/locations/x/models/9",
            "modelVersionId": "3",
        }
    )


async def test_predict_with_a_service_account_token(registry, rsa_key, tmp_path):
    private, public = rsa_key
    fake = GoogleFake(public, tabular_model)
    async with FakeCloud(fake) as cloud:
        registry.connections.add(
            name="gcp",
            provider="vertex",
            region="europe-west4",
            google_credentials_file=service_account_file(tmp_path, private, f"{cloud.url}/token"),
        )
        model = registry.register(
            "churn",
            connection="gcp",
            endpoint=cloud.url,
            remote_name="1234567890",
            batch_size=2,
            batch_timeout=0.05,
            parameters={"confidenceThreshold": 0.5},
        )
        out = await model.predict_many([[1, 2], [3, 4]])
        assert out == [pytest.approx([0.7, 0.3]), pytest.approx([0.3, 0.7])]
        req = cloud.last
        assert req.method == "POST"
        assert req.path == (
            "/v1/projects/acme-ml/locations/europe-west4/endpoints/1234567890:predict"
        )
        assert req.json == {
            "instances": [[1, 2], [3, 4]],
            "parameters": {"confidenceThreshold": 0.5},
        }
        predictions = await model.runner.provider.infer([[0, 0]])
        assert predictions.model_version == "3"
        await model.predict_many([[5, 5]] * 3)
        assert fake.tokens_issued == 1  # one token for every request
        # google-auth's refresh is a blocking HTTP call to this same event loop's
        # server: had it run on the loop's thread, the test would have deadlocked.


def embedding_model(req: Received):
    """Vertex text-embedding predict: predictions[].embeddings.{values, statistics}."""
    return json_reply(
        {
            "predictions": [
                {
                    "embeddings": {
                        "values": [float(len(i["content"])), 0.5],
                        "statistics": {
                            "token_count": len(i["content"].split()),
                            "truncated": False,
                        },
                    }
                }
                for i in req.json["instances"]
            ]
        }
    )


async def test_publisher_embedding_model_via_predict(registry):
    class StaticCredentials:
        """google-auth Credentials' interface: refresh(request), token, expiry."""

        def __init__(self):
            self.token, self.expiry, self.refreshes = None, None, 0

        def refresh(self, request):
            self.refreshes += 1
            self.token = f"tok-{self.refreshes}"

    creds = StaticCredentials()
    async with FakeCloud(embedding_model) as cloud:
        registry.connections.add(name="gcp", project="acme", region="us-east1", credentials=creds)
        model = registry.register(
            "embed",
            provider="vertex",
            connection="gcp",
            endpoint=cloud.url,
            task="embedding",
            remote_name="publishers/google/models/text-embedding-005",
            batch_size=4,
            batch_timeout=0.05,
            task_type="RETRIEVAL_DOCUMENT",
            output_dimensionality=2,
        )
        assert await model.predict_many(["a b", "ccc"]) == [[3.0, 0.5], [3.0, 0.5]]
        req = cloud.last
        assert req.path == (
            "/v1/projects/acme/locations/us-east1/publishers/google/models/"
            "text-embedding-005:predict"
        )
        assert req.json == {
            "instances": [
                {"content": "a b", "task_type": "RETRIEVAL_DOCUMENT"},
                {"content": "ccc", "task_type": "RETRIEVAL_DOCUMENT"},
            ],
            "parameters": {"outputDimensionality": 2},
        }
        assert req.headers["Authorization"] == "Bearer tok-1"
        usage = (await model.runner.provider.infer(["one two three"])).usage
        assert usage.input_tokens == 3


def gemini_answer(req: Received):
    """generateContent response: candidates[].content.parts[].text, usageMetadata, modelVersion."""
    text = req.json["contents"][-1]["parts"][0]["text"]
    return json_reply(
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": text.upper()}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": len(text),
                "candidatesTokenCount": 1,
                "totalTokenCount": len(text) + 1,
            },
            "modelVersion": "gemini-2.0-flash-001",
        }
    )


async def test_gemini_generate_content_with_an_api_key(registry):
    async with FakeCloud(gemini_answer) as cloud:
        model = registry.register(
            "triage",
            provider="gemini",
            endpoint=cloud.url,
            api_key=API_KEY,
            remote_name="gemini-2.0-flash",
            task="text_generation",
            system_prompt="Label it.",
            parameters={"temperature": 0},
        )
        assert await model.predict("refund please") == "REFUND PLEASE"
        req = cloud.last
        assert req.path == "/v1beta/models/gemini-2.0-flash:generateContent"
        assert req.headers["x-goog-api-key"] == API_KEY and "key=" not in req.path
        assert req.json == {
            "contents": [{"role": "user", "parts": [{"text": "refund please"}]}],
            "systemInstruction": {"parts": [{"text": "Label it."}]},
            "generationConfig": {"temperature": 0},
        }
        predictions = await model.runner.provider.infer(
            [
                [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yes?"},
                    {"role": "user", "content": "abc"},
                ]
            ]
        )
        assert predictions.outputs == ["ABC"]
        assert cloud.last.json["contents"][1] == {"role": "model", "parts": [{"text": "yes?"}]}
        assert (predictions.usage.input_tokens, predictions.usage.output_tokens) == (3, 1)
        assert predictions.model_version == "gemini-2.0-flash-001"


async def test_gemini_embed_content_and_batch_embed_contents(registry):
    def answer(req):
        if req.path.endswith(":batchEmbedContents"):
            return json_reply(
                {
                    "embeddings": [
                        {"values": [float(len(r["content"]["parts"][0]["text"]))]}
                        for r in req.json["requests"]
                    ]
                }
            )
        return json_reply(
            {"embedding": {"values": [float(len(req.json["content"]["parts"][0]["text"]))]}}
        )

    async with FakeCloud(answer) as cloud:
        one = registry.register(
            "e1",
            provider="gemini",
            endpoint=cloud.url,
            api_key=API_KEY,
            task="embedding",
            remote_name="text-embedding-004",
        )
        assert await one.predict("abcd") == [4.0]
        assert cloud.last.path == "/v1beta/models/text-embedding-004:embedContent"
        assert cloud.last.json == {"content": {"parts": [{"text": "abcd"}]}}
        many = registry.register(
            "e2",
            provider="gemini",
            endpoint=cloud.url,
            api_key=API_KEY,
            task="embedding",
            remote_name="models/text-embedding-004",
            batch_size=8,
            batch_timeout=0.05,
            task_type="CLUSTERING",
        )
        assert await many.predict_many(["a", "bb"]) == [[1.0], [2.0]]
        assert cloud.last.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
        assert cloud.last.json == {
            "requests": [
                {
                    "model": "models/text-embedding-004",
                    "content": {"parts": [{"text": "a"}]},
                    "taskType": "CLUSTERING",
                },
                {
                    "model": "models/text-embedding-004",
                    "content": {"parts": [{"text": "bb"}]},
                    "taskType": "CLUSTERING",
                },
            ]
        }


def google_status(code, status, message="m", details=()):
    return json.dumps(
        {"error": {"code": code, "message": message, "status": status, "details": list(details)}}
    ).encode()


@pytest.mark.parametrize(
    ("status", "body", "cls", "retryable", "retry_after"),
    [
        (
            429,
            google_status(
                429,
                "RESOURCE_EXHAUSTED",
                details=[
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}
                ],
            ),
            RateLimited,
            True,
            12.0,
        ),
        (503, google_status(503, "UNAVAILABLE"), ServerError, True, None),
        (500, google_status(500, "INTERNAL"), ServerError, True, None),
        (504, google_status(504, "DEADLINE_EXCEEDED"), ServerError, True, None),
        (401, google_status(401, "UNAUTHENTICATED"), ClientError, False, None),
        (403, google_status(403, "PERMISSION_DENIED"), ClientError, False, None),
        (
            400,
            google_status(400, "FAILED_PRECONDITION", "Endpoint has no deployed model"),
            ClientError,
            False,
            None,
        ),
        (400, b"[" + google_status(400, "INVALID_ARGUMENT") + b"]", ClientError, False, None),
    ],
)
def test_google_errors_map_to_our_errors(status, body, cls, retryable, retry_after):
    error = google_error(status, {}, body, "https://x/v1/m:predict", ())
    assert type(error) is cls and error.retryable is retryable and error.retry_after == retry_after


async def test_resource_exhausted_waits_for_retry_delay_and_bad_key_is_final(registry):
    calls = []

    def answer(req):
        calls.append(time.monotonic())
        if len(calls) == 1:
            return (
                429,
                {"Content-Type": "application/json"},
                google_status(
                    429,
                    "RESOURCE_EXHAUSTED",
                    details=[
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.3s"}
                    ],
                ),
            )
        if req.json["contents"][0]["parts"][0]["text"] == "bad":
            return 400, {}, google_status(400, "INVALID_ARGUMENT", f"API key not valid {API_KEY}")
        return gemini_answer(req)

    async with FakeCloud(answer) as cloud:
        model = registry.register(
            "g",
            provider="gemini",
            endpoint=cloud.url,
            api_key=API_KEY,
            task="text_generation",
            retries={"max_retries": 2, "initial_backoff": 0.001, "jitter": 0},
        )
        assert await model.predict("ok") == "OK"
        assert calls[1] - calls[0] >= 0.3
        with pytest.raises(ClientError, match="INVALID_ARGUMENT") as info:
            await model.predict("bad")
        assert API_KEY not in str(info.value) and len(cloud.requests) == 3


async def test_blocked_prompt_and_unavailable(registry):
    def answer(req):
        if req.json["contents"][0]["parts"][0]["text"] == "blocked":
            return json_reply({"promptFeedback": {"blockReason": "SAFETY"}})
        return 503, {}, google_status(503, "UNAVAILABLE")

    async with FakeCloud(answer) as cloud:
        model = registry.register(
            "g",
            provider="gemini",
            endpoint=cloud.url,
            api_key=API_KEY,
            task="text_generation",
            retries={"max_retries": 1, "initial_backoff": 0.001},
        )
        with pytest.raises(ResponseDecodeError, match="SAFETY"):
            await model.predict("blocked")
        with pytest.raises(RetriesExhausted):
            await model.predict("other")
        assert len(cloud.requests) == 3


def test_configuration_errors(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="GEMINI_API_KEY"):
        ModelRegistry().register("g", provider="gemini", task="text_generation")
    monkeypatch.setitem(__import__("sys").modules, "google.auth", None)
    with pytest.raises(ConfigurationError, match=r"faust-inference\[gcp\]"):
        ModelRegistry().register("v", provider="vertex", project="p")
