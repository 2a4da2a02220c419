"""Request and response format of the kserve provider (Open Inference Protocol V2).

Checked against the fake endpoint (a test double) so that the exact request
body can be asserted; tests/integration runs the same provider against MLServer.
"""

import orjson
import pytest

from devtools.fake_endpoint import FakeEndpoint
from faust_inference import InvalidInput


async def test_rows_are_stacked_into_one_tensor_and_split_back(registry):
    async with FakeEndpoint() as ep:
        model = registry.register(
            "fraud",
            provider="kserve",
            endpoint=ep.url,
            version="v1",
            input_name="features",
            batch_size=3,
            batch_timeout=0.05,
        )
        outputs = await model.predict_many([[1.0, 2.0], [3.0, 4.0], [0.0, -1.0]])
        request = ep.stats.recent[-1]
        assert request.path == "/v2/models/fraud/versions/v1/infer"
        body = orjson.loads(request.body)
        assert body["inputs"] == [
            {
                "name": "features",
                "shape": [3, 2],
                "datatype": "FP64",
                "data": [1.0, 2.0, 3.0, 4.0, 0.0, -1.0],
            }
        ]
        assert len(outputs) == 3 and all(len(o) == 2 for o in outputs)
        assert outputs[0] != outputs[1]  # each row got its own answer


async def test_integer_rows_are_int64_and_versionless_paths_work(registry):
    async with FakeEndpoint() as ep:
        model = registry.register("m", provider="kserve", endpoint=ep.url, remote_name="fraud")
        await model.predict([1, 2, 3])
        request = ep.stats.recent[-1]
        assert request.path == "/v2/models/fraud/infer"
        assert orjson.loads(request.body)["inputs"][0]["datatype"] == "INT64"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1.0, "x"], "values must all be numbers, booleans or strings, got float, str"),
        ([], "a row is empty"),
        ([float("nan"), 1.0], "NaN or infinity"),
        ([1.0, 2.0, 3.0], r"expected a row of shape \[2\], got shape \[3\]"),
        (object(), "expected numbers, strings or lists of them, got object"),
    ],
)
async def test_bad_rows_are_rejected_before_sending_with_the_field_named(registry, row, message):
    async with FakeEndpoint() as ep:
        model = registry.register(
            "fraud",
            provider="kserve",
            endpoint=ep.url,
            input_name="features",
            shape=[2],
        )
        with pytest.raises(InvalidInput, match=message) as info:
            await model.predict(row)
        assert info.value.field == "features"
        assert info.value.attempts == 0
        assert ep.stats.total == 0


async def test_several_outputs_come_back_as_a_mapping(registry):
    async with FakeEndpoint() as ep:
        model = registry.register(
            "m",
            provider="kserve",
            endpoint=ep.url,
            outputs=["predict_proba"],
        )
        out = await model.predict([0.0, 0.0])
        assert out == [0.5, 0.5]
        body = orjson.loads(ep.stats.recent[-1].body)
        assert body["outputs"] == [{"name": "predict_proba"}]
