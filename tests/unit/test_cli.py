from faust_inference import ModelRegistry
from faust_inference.cli import describe


def test_describe_lists_models_without_credentials():
    registry = ModelRegistry()
    registry.register(
        "fraud",
        provider="kserve",
        endpoint="http://127.0.0.1:8080",
        version="v1",
        batch_size=16,
        api_key="sk-secret-value-123",
    )
    registry.register("chat", provider="openai", task="text_generation", api_key="sk-other-456")
    lines = describe(registry.models.values()).splitlines()
    assert lines[0].split()[:3] == ["name", "provider", "endpoint"]
    assert lines[1].split()[:5] == ["fraud", "kserve", "http://127.0.0.1:8080", "fraud", "v1"]
    assert lines[2].split()[:3] == ["chat", "openai", "(default)"]
    assert "sk-" not in "\n".join(lines)


def test_describe_drops_userinfo_and_scrubs_the_models_secrets():
    registry = ModelRegistry()
    registry.register("fraud", provider="kserve", endpoint="http://bob:pw-s3cret-1@127.0.0.1:8080")
    registry.register(
        "chat",
        provider="openai",
        endpoint="http://127.0.0.1:8081/v1",
        remote_name="sk-live-key-in-a-name-0001",
        api_key="sk-live-key-in-a-name-0001",
        task="text_generation",
    )
    text = describe(registry.models.values())
    assert "http://127.0.0.1:8080" in text and "http://127.0.0.1:8081/v1" in text
    for leaked in ("bob", "pw-s3cret-1", "sk-live"):
        assert leaked not in text, leaked


def test_an_endpoint_with_a_query_is_refused_naming_the_options_to_use():
    import pytest

    from faust_inference import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"endpoint.*no query string.*api_key="):
        ModelRegistry().register(
            "m", provider="openai", endpoint="http://127.0.0.1:8081/v1?key=abcd"
        )
