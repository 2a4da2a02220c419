"""The kserve provider's wire formats against a real MLServer: gRPC, gzip, binary.

MLServer serves the protocol's gRPC service and decompresses gzip bodies;
its REST server does not take the binary tensor extension, which the last
test pins down (the binary path itself runs against the fake endpoint, in
tests/unit/providers/test_oip_binary.py, and in benchmarks/wire.py).
"""

import pytest

from examples.fraud_detection.train import make_transactions
from faust_inference import InferenceError
from faust_inference.exceptions import ModelNotFound

pytest.importorskip("grpc")


def _register(registry, mlserver, name, **options):
    return registry.register(
        name,
        provider="kserve",
        remote_name="fraud",
        version="v1",
        input_name="features",
        batch_size=16,
        batch_timeout=0.02,
        max_concurrency=4,
        **{"endpoint": mlserver.url, **options},
    )


async def test_grpc_and_gzip_answer_exactly_what_json_answers(mlserver, registry):
    rows, _ = make_transactions(48, seed=5)
    grpc_url = f"http://127.0.0.1:{mlserver.grpc_port}"
    json_model = _register(registry, mlserver, "json")
    grpc_model = _register(registry, mlserver, "grpc", protocol="grpc", endpoint=grpc_url)
    grpc_gzip = _register(
        registry, mlserver, "grpc-gz", protocol="grpc", endpoint=grpc_url, compression="gzip"
    )
    rest_gzip = _register(registry, mlserver, "rest-gz", compression="gzip")
    expected = await json_model.predict_many(rows)
    assert len({round(p[1], 9) for p in expected}) > 10  # real, input-dependent scores
    for model in (grpc_model, grpc_gzip, rest_gzip):
        assert await model.predict_many(rows) == expected  # FP64 both ways: exact
        assert (await model.runner.submit(rows[0])).version == "v1"


async def test_grpc_readiness_names_a_missing_model(mlserver, registry):
    grpc_url = f"http://127.0.0.1:{mlserver.grpc_port}"
    await _register(
        registry, mlserver, "ready", protocol="grpc", endpoint=grpc_url
    ).runner.provider.ready()
    missing = registry.register(
        "nope", provider="kserve", protocol="grpc", endpoint=grpc_url, version="v1"
    )
    with pytest.raises(ModelNotFound, match="nope.*not found.*gRPC port"):
        await missing.runner.provider.ready()


async def test_mlservers_rest_server_refuses_binary_tensors(mlserver, registry):
    model = _register(registry, mlserver, "binary", binary=True, retries=0)
    with pytest.raises(InferenceError) as info:
        await model.predict(make_transactions(1, seed=1)[0][0])
    assert getattr(info.value, "status", None) == 500
