"""Request format, SigV4 signing and error mapping of the sagemaker provider.

Against tests/unit/providers/cloud_fake.py, a fake endpoint: SageMaker cannot
be reached from the test machines. Requests and answers follow the SageMaker
Runtime InvokeEndpoint reference (headers, JSON and CSV bodies, ModelError's
OriginalStatusCode); every signature is verified with botocore.
"""

import csv
import io

import pytest

from faust_inference import ClientError, InvalidInput, RateLimited, ServerError
from faust_inference.exceptions import RetriesExhausted
from faust_inference.providers.classify import aws_error

from .cloud_fake import FakeCloud, Received, json_reply, verify_sigv4

KEY_ID, SECRET = "AKIDSAGEMAKERFAKE", "sagemaker/fake/secret/abcdefghijklmnopqrstu"
REGION = "us-east-2"


@pytest.fixture
def connection(registry):
    registry.connections.add(
        name="sm",
        provider="sagemaker",
        region=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    return "sm"


def json_model(req: Received):
    """A container answering {"predictions": [...]}: the sum of each instance's features."""
    instances = req.json["instances"]
    return json_reply(
        {"predictions": [sum(row) for row in instances]},
        headers={"x-Amzn-Invoked-Production-Variant": "blue"},
    )


async def test_json_batch_is_one_signed_invoke_endpoint_call(registry, connection):
    async with FakeCloud(json_model) as cloud:
        model = registry.register(
            "churn",
            connection=connection,
            endpoint=cloud.url,
            remote_name="churn-xgb prod",
            batch_size=3,
            batch_timeout=0.05,
            target_variant="blue",
            custom_attributes="trace=1",
        )
        assert await model.predict_many([[1, 2], [3, 4], [5, 6]]) == [3, 7, 11]
        assert len(cloud.requests) == 1
        req = cloud.last
        assert (req.method, req.path) == ("POST", "/endpoints/churn-xgb%20prod/invocations")
        assert req.json == {"instances": [[1, 2], [3, 4], [5, 6]]}
        assert req.headers["Content-Type"] == "application/json"
        assert req.headers["Accept"] == "application/json"
        assert req.headers["X-Amzn-SageMaker-Target-Variant"] == "blue"
        assert req.headers["X-Amzn-SageMaker-Custom-Attributes"] == "trace=1"
        signed = verify_sigv4(
            req,
            access_key=KEY_ID,
            secret_key=SECRET,
            token=None,
            service="sagemaker",
            region=REGION,
        )
        assert "x-amzn-sagemaker-target-variant" in signed
        predictions = await model.runner.provider.infer([[1, 1]])
        assert predictions.model_version == "blue"


def csv_model(req: Received):
    """A built-in-algorithm container: text/csv in, one score per line out."""
    rows = list(csv.reader(io.StringIO(req.body.decode())))
    return (
        200,
        {"Content-Type": "text/csv"},
        "\n".join(str(sum(float(v) for v in row) / 10) for row in rows).encode(),
    )


async def test_csv_rows_go_one_per_line_and_scores_come_back_per_row(registry, connection):
    async with FakeCloud(csv_model) as cloud:
        model = registry.register(
            "xgb",
            connection=connection,
            endpoint=cloud.url,
            content_type="text/csv",
            batch_size=2,
            batch_timeout=0.05,
        )
        assert await model.predict_many([[1, 2.5], [3, 4]]) == [0.35, 0.7]
        req = cloud.last
        assert req.body == b"1,2.5\n3,4\n"
        assert req.headers["Content-Type"] == "text/csv" and req.headers["Accept"] == "text/csv"
        assert req.path == "/endpoints/xgb/invocations"
        verify_sigv4(
            req,
            access_key=KEY_ID,
            secret_key=SECRET,
            token=None,
            service="sagemaker",
            region=REGION,
        )


async def test_csv_answer_on_one_line_is_split_per_row(registry, connection):
    def one_line(req):
        n = len(req.body.decode().splitlines())
        return 200, {"Content-Type": "text/csv"}, ",".join(str(i / 10) for i in range(n)).encode()

    async with FakeCloud(one_line) as cloud:
        model = registry.register(
            "xgb",
            connection=connection,
            endpoint=cloud.url,
            content_type="text/csv",
            batch_size=3,
            batch_timeout=0.05,
        )
        assert await model.predict_many([[1], [2], [3]]) == [0.0, 0.1, 0.2]


async def test_nested_rows_are_not_csv(registry, connection):
    model = registry.register(
        "xgb", connection=connection, endpoint="http://127.0.0.1:9", content_type="text/csv"
    )
    with pytest.raises(InvalidInput, match="flat list"):
        await model.predict([[1, 2], [3]])


async def test_custom_json_shapes(registry, connection):
    def answer(req):
        return json_reply([{"label": x.upper()} for x in req.json["inputs"]])

    async with FakeCloud(answer) as cloud:
        model = registry.register(
            "hf",
            connection=connection,
            endpoint=cloud.url,
            batch_size=2,
            batch_timeout=0.05,
            request_builder=lambda xs: {"inputs": xs},
            response_parser=lambda body, n: [item["label"] for item in body],
        )
        assert await model.predict_many(["a", "b"]) == ["A", "B"]


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "retryable"),
    [
        (
            429,
            {"x-amzn-ErrorType": "ModelNotReadyException:"},
            {"message": "loading"},
            ServerError,
            True,
        ),
        (
            400,
            {"x-amzn-ErrorType": "ThrottlingException:"},
            {"message": "Rate exceeded"},
            RateLimited,
            True,
        ),
        (503, {"x-amzn-ErrorType": "ServiceUnavailable:"}, {"message": "x"}, ServerError, True),
        (
            530,
            {"x-amzn-ErrorType": "InternalDependencyException:"},
            {"message": "x"},
            ServerError,
            True,
        ),
        (
            400,
            {"x-amzn-ErrorType": "ValidationError:"},
            {"message": "Endpoint not found"},
            ClientError,
            False,
        ),
        (
            403,
            {},
            {"__type": "com.amazon.coral#InvalidSignatureException", "message": "x"},
            ClientError,
            False,
        ),
        (
            424,
            {"x-amzn-ErrorType": "ModelError:"},
            {
                "ErrorCode": "CLIENT_ERROR_FROM_MODEL",
                "OriginalStatusCode": 503,
                "OriginalMessage": "overloaded",
                "Message": "Received server error (503)",
            },
            ServerError,
            True,
        ),
        (
            424,
            {"x-amzn-ErrorType": "ModelError:"},
            {
                "ErrorCode": "CLIENT_ERROR_FROM_MODEL",
                "OriginalStatusCode": 400,
                "OriginalMessage": "bad row",
                "Message": "Received client error (400)",
            },
            ClientError,
            False,
        ),
    ],
)
def test_sagemaker_errors_map_to_our_errors(status, headers, body, cls, retryable):
    import orjson

    error = aws_error(status, headers, orjson.dumps(body), "https://h/endpoints/e/invocations", ())
    assert type(error) is cls and error.retryable is retryable and error.status == status


async def test_model_not_ready_is_retried_until_it_loads(registry, connection):
    calls = []

    def loading(req):
        calls.append(1)
        if len(calls) < 3:
            return json_reply(
                {"message": "Model is loading"},
                status=429,
                headers={"x-amzn-ErrorType": "ModelNotReadyException:x"},
            )
        return json_model(req)

    async with FakeCloud(loading) as cloud:
        model = registry.register(
            "m",
            connection=connection,
            endpoint=cloud.url,
            retries={"max_retries": 3, "initial_backoff": 0.01, "jitter": 0},
        )
        assert await model.predict([2, 3]) == 5
        assert len(cloud.requests) == 3


async def test_model_error_from_a_bad_row_is_not_retried(registry, connection):
    def failing(req):
        return json_reply(
            {
                "ErrorCode": "CLIENT_ERROR_FROM_MODEL",
                "OriginalStatusCode": 400,
                "OriginalMessage": "could not convert string to float",
                "Message": "Received client error (400) from primary",
            },
            status=424,
            headers={"x-amzn-ErrorType": "ModelError:x"},
        )

    async with FakeCloud(failing) as cloud:
        model = registry.register(
            "m",
            connection=connection,
            endpoint=cloud.url,
            retries={"max_retries": 3, "initial_backoff": 0.01},
        )
        with pytest.raises(ClientError, match="ModelError"):
            await model.predict(["x"])
        assert len(cloud.requests) == 1


async def test_service_unavailable_exhausts_retries(registry, connection):
    def down(req):
        return json_reply(
            {"message": "down"}, status=503, headers={"x-amzn-ErrorType": "ServiceUnavailable:x"}
        )

    async with FakeCloud(down) as cloud:
        model = registry.register(
            "m",
            connection=connection,
            endpoint=cloud.url,
            retries={"max_retries": 1, "initial_backoff": 0.01},
        )
        with pytest.raises(RetriesExhausted):
            await model.predict([1])
        assert len(cloud.requests) == 2


def test_no_credentials_anywhere_fails_at_registration(monkeypatch, tmp_path):
    from faust_inference import ConfigurationError, ModelRegistry

    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigurationError, match="found no AWS credentials"):
        ModelRegistry().register("m", provider="sagemaker", region=REGION)
    registry = ModelRegistry()
    registry.connections.add(name="p", aws_profile="missing-profile", region=REGION)
    with pytest.raises(ConfigurationError, match="ProfileNotFound"):
        registry.register("m", provider="sagemaker", connection="p")
