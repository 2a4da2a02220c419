"""Versions of one model: inherited settings, own runners, pinning."""

import pytest

from faust_inference import ConfigurationError, InferenceResult, ModelRegistry


@pytest.fixture
async def fraud():
    registry = ModelRegistry()
    model = registry.register(
        "fraud",
        provider="kserve",
        endpoint="http://127.0.0.1:9",
        version="v1",
        max_concurrency=8,
        timeout=3.0,
        input_name="features",
    )
    yield model
    await registry.aclose()


async def test_a_version_inherits_what_it_does_not_override(fraud):
    fraud.add_version("v2", endpoint="http://127.0.0.1:10", max_concurrency=2)
    v1, v2 = fraud.versions.runners["v1"], fraud.versions.runners["v2"]
    assert fraud.versions.names == ("v1", "v2") and fraud.versions.default == "v1"
    assert v1 is fraud.runner and v2 is not v1
    assert v2.settings.endpoint == "http://127.0.0.1:10" and v2.settings.max_concurrency == 2
    assert v2.settings.timeout == 3.0 and v2.settings.options["input_name"] == "features"
    assert v2.settings.version == "v2" and v2.settings.name == "fraud"
    assert fraud.settings.version == "v1"  # the single-version form is unchanged


async def test_pinning_a_version_keeps_the_preprocessor(fraud):
    fraud.add_version("v2", endpoint="http://127.0.0.1:10")

    @fraud.preprocess
    def features(event):
        return event["x"]

    pinned = fraud.version("v2")
    assert pinned.runner is fraud.versions.runners["v2"]
    assert pinned.prepare({"x": [1.0]}) == [1.0] and pinned.pinned_version == "v2"


async def test_bad_versions_are_refused_with_the_fix(fraud):
    with pytest.raises(ConfigurationError, match="already has a version 'v1'"):
        fraud.add_version("v1")
    with pytest.raises(ConfigurationError, match="cache cannot differ per version"):
        fraud.add_version("v2", cache=True)
    with pytest.raises(ConfigurationError, match="version 'v2': max_concurrency"):
        fraud.add_version("v2", max_concurrency=0)
    with pytest.raises(ConfigurationError, match="no version 'v3'; registered: v1"):
        fraud.version("v3")
    with pytest.raises(ConfigurationError, match="'v 2' is not a usable version name: use"):
        fraud.add_version("v 2")


def test_a_result_says_which_arm_answered():
    r = InferenceResult(event=1, output=2, model="fraud", version="v2", variant="treatment")
    assert (r.version, r.variant) == ("v2", "treatment")


def test_a_version_with_its_own_endpoint_does_not_call_the_models_replicas():
    from faust_inference.config import ModelSettings
    from faust_inference.lifecycle.versions import version_settings

    base = ModelSettings(
        name="fraud", provider="kserve", endpoint=["http://127.0.0.1:9", "http://127.0.0.1:10"]
    )
    one = version_settings(base, "v2", {"endpoint": "http://127.0.0.1:11"})
    assert (one.endpoint, one.endpoints) == ("http://127.0.0.1:11", ())
    assert one.replica_urls == ("http://127.0.0.1:11",)
    pooled = version_settings(
        base, "v3", {"endpoint": ["http://127.0.0.1:12", "http://127.0.0.1:13"]}
    )
    assert pooled.replica_urls == ("http://127.0.0.1:12", "http://127.0.0.1:13")
    # Without an endpoint of its own, a version calls the model's replicas.
    same = version_settings(base, "v4", {"max_concurrency": 2})
    assert same.replica_urls == ("http://127.0.0.1:9", "http://127.0.0.1:10")


async def test_a_version_keeps_the_connections_credential_object():
    registry = ModelRegistry()
    credential = object()  # an SDK credential object (azure-identity, google-auth, botocore)
    registry.connections.add(
        name="cloud", provider="openai", endpoint="http://127.0.0.1:9/v1", credentials=credential
    )
    model = registry.register("chat", connection="cloud", task="text_generation")
    try:
        model.add_version("v2", max_concurrency=2)
        settings = model.versions.runners["v2"].settings
        assert settings.connection is model.settings.connection
        assert settings.connection is not None and settings.connection.credentials is credential
        assert settings.endpoint == "http://127.0.0.1:9/v1" and settings.max_concurrency == 2
    finally:
        await registry.aclose()
