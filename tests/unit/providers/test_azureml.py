"""Request format, authentication and error mapping of the azureml provider.

Against tests/unit/providers/cloud_fake.py, a fake endpoint: Azure ML cannot be
reached from the test machines. The request follows Azure ML's online
endpoint docs (POST /score, Bearer key or Entra token, azureml-model-deployment,
MLflow input_data frames); model-container failures come back as 424 with
ms-azureml-model-error-statuscode, as Azure documents.
"""

import threading
import time

import orjson
import pytest
from azure.core.credentials import AccessToken

from faust_inference import ClientError, RateLimited, ServerError
from faust_inference.exceptions import RetriesExhausted
from faust_inference.providers.auth.entra import ML_SCOPE
from faust_inference.providers.classify import azure_error

from .cloud_fake import FakeCloud, Received, json_reply

KEY = "aml-endpoint-key-abcdefghijklmnopqrstuvwxyz"


def mlflow_model(req: Received):
    frame = req.json["input_data"]
    return json_reply([round(sum(row) / 100, 4) for row in frame["data"]])


async def test_mlflow_frame_with_key_and_deployment(registry):
    async with FakeCloud(mlflow_model) as cloud:
        registry.connections.add(name="aml", provider="azureml", endpoint=cloud.url, api_key=KEY)
        model = registry.register(
            "fraud",
            connection="aml",
            deployment="blue",
            columns=["amount", "hour"],
            batch_size=2,
            batch_timeout=0.05,
        )
        assert await model.predict_many([[120.0, 23], [5.0, 3]]) == [1.43, 0.08]
        req = cloud.last
        assert (req.method, req.path) == ("POST", "/score")
        assert req.headers["Authorization"] == f"Bearer {KEY}"
        assert req.headers["azureml-model-deployment"] == "blue"
        assert req.headers["Content-Type"] == "application/json"
        assert req.json == {
            "input_data": {
                "columns": ["amount", "hour"],
                "index": [0, 1],
                "data": [[120.0, 23], [5.0, 3]],
            }
        }


async def test_custom_scoring_script_and_entra_token(registry):
    class Credential:
        calls = []

        def get_token(self, *scopes, **kwargs):
            self.calls.append((scopes, threading.get_ident()))
            return AccessToken("aml-entra-token", int(time.time() + 3600))

    credential = Credential()

    def script(req):
        return json_reply({"predictions": [t.upper() for t in req.json["texts"]]})

    async with FakeCloud(script) as cloud:
        registry.connections.add(
            name="aml", provider="azureml", endpoint=f"{cloud.url}/score", credentials=credential
        )
        model = registry.register(
            "upper",
            connection="aml",
            format="custom",
            version="green",
            request_builder=lambda xs: {"texts": xs},
            batch_size=4,
            batch_timeout=0.05,
        )
        assert await model.predict_many(["a", "b"]) == ["A", "B"]
        assert cloud.last.path == "/score"
        assert cloud.last.headers["Authorization"] == "Bearer aml-entra-token"
        assert cloud.last.headers["azureml-model-deployment"] == "green"
        assert credential.calls[0][0] == (ML_SCOPE,)
        assert credential.calls[0][1] != threading.get_ident()


@pytest.mark.parametrize(
    ("status", "headers", "cls", "retryable"),
    [
        (
            424,
            {
                "ms-azureml-model-error-statuscode": "503",
                "ms-azureml-model-error-reason": "model overloaded",
            },
            ServerError,
            True,
        ),
        (
            424,
            {
                "ms-azureml-model-error-statuscode": "400",
                "ms-azureml-model-error-reason": "bad input",
            },
            ClientError,
            False,
        ),
        (429, {}, RateLimited, True),  # too many pending requests / rate limiting
        (408, {}, ServerError, True),  # request_timeout_ms exceeded
        (502, {}, ServerError, True),  # the scoring script's run() raised
        (503, {}, ServerError, True),  # scaling up
        (401, {}, ClientError, False),  # bad key or expired token
        (404, {}, ClientError, False),  # no deployment with traffic
    ],
)
def test_azureml_statuses_map_to_our_errors(status, headers, cls, retryable):
    error = azure_error(
        status, headers, b'"error"', "https://e.westeurope.inference.ml.azure.com/score", ()
    )
    assert type(error) is cls and error.retryable is retryable and error.status == status


async def test_model_error_424_is_retried_only_when_the_container_said_5xx(registry):
    seen = []

    def answer(req):
        seen.append(req.json["input_data"]["data"][0][0])
        if seen[-1] < 0:
            return (
                424,
                {
                    "ms-azureml-model-error-statuscode": "400",
                    "ms-azureml-model-error-reason": "ValueError",
                },
                orjson.dumps("bad row"),
            )
        if len(seen) == 1:
            return 424, {"ms-azureml-model-error-statuscode": "503"}, b"busy"
        return mlflow_model(req)

    async with FakeCloud(answer) as cloud:
        model = registry.register(
            "m",
            provider="azureml",
            endpoint=cloud.url,
            api_key=KEY,
            retries={"max_retries": 2, "initial_backoff": 0.001},
        )
        assert await model.predict([50.0]) == 0.5
        assert len(cloud.requests) == 2
        with pytest.raises(ClientError, match="ValueError") as info:
            await model.predict([-1.0])
        assert len(cloud.requests) == 3 and KEY not in str(info.value)


async def test_too_many_pending_requests_exhausts_retries(registry):
    async with FakeCloud(lambda req: (429, {}, b"Too many pending requests")) as cloud:
        model = registry.register(
            "m",
            provider="azureml",
            endpoint=cloud.url,
            api_key=KEY,
            retries={"max_retries": 1, "initial_backoff": 0.001},
        )
        with pytest.raises(RetriesExhausted) as info:
            await model.predict([1.0])
        assert isinstance(info.value.last_error, RateLimited) and len(cloud.requests) == 2
