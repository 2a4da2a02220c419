"""The kserve provider against a real MLServer serving a scikit-learn classifier."""

import pytest

from examples.fraud_detection.train import make_transactions
from faust_inference import InvalidInput, RetriesExhausted
from faust_inference.exceptions import ModelNotFound, ModelUnavailable


async def test_batched_predictions_match_single_ones(mlserver, registry):
    rows, _ = make_transactions(40, seed=3)
    batched = registry.register(
        "fraud",
        provider="kserve",
        endpoint=mlserver.url,
        version="v1",
        input_name="features",
        batch_size=16,
        batch_timeout=0.05,
        max_concurrency=4,
    )
    single = registry.register(
        "fraud-single",
        provider="kserve",
        endpoint=mlserver.url,
        remote_name="fraud",
        batch_size=1,
    )
    many = await batched.predict_many(rows)
    assert len(many) == 40
    for p in many:
        assert len(p) == 2 and abs(sum(p) - 1) < 1e-9
    for i in (0, 17, 39):
        assert await single.predict(rows[i]) == pytest.approx(many[i], abs=1e-12)
    assert len({round(p[1], 9) for p in many}) > 10  # real, input-dependent scores


async def test_wrong_row_length_is_rejected_locally_with_the_shape_option(mlserver, registry):
    model = registry.register(
        "fraud",
        provider="kserve",
        endpoint=mlserver.url,
        input_name="features",
        shape=[10],
    )
    with pytest.raises(InvalidInput, match=r"expected a row of shape \[10\], got shape \[7\]"):
        await model.predict([0.1] * 7)


async def test_without_the_shape_option_mlservers_500_ends_in_retries_exhausted(mlserver, registry):
    model = registry.register(
        "fraud",
        provider="kserve",
        endpoint=mlserver.url,
        retries={"max_retries": 1, "initial_backoff": 0.01},
    )
    with pytest.raises(RetriesExhausted) as info:
        await model.predict([0.1] * 7)
    assert info.value.last_error.status == 500 and info.value.attempts == 2


async def test_unknown_model_fails_the_readiness_check_and_is_an_outage_during_the_run(
    mlserver, registry
):
    model = registry.register(
        "nope",
        provider="kserve",
        endpoint=mlserver.url,
        retries={"max_retries": 1, "initial_backoff": 0.01},
    )
    with pytest.raises(ModelNotFound, match=r"/v2/models/nope/ready answered 404.*remote_name="):
        await model.runner.provider.ready()
    await registry.register(
        "fraud-ready", provider="kserve", endpoint=mlserver.url, remote_name="fraud"
    ).runner.provider.ready()
    # Once running, a 404 means the model went away: retried, as an outage.
    with pytest.raises(RetriesExhausted) as info:
        await model.predict([0.1] * 10)
    last = info.value.last_error
    assert isinstance(last, ModelUnavailable) and last.status == 404
    assert "Model nope not found" in str(last) and info.value.attempts == 2
