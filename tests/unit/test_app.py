import logging

import pytest

from faust_inference import ConfigurationError, ModelNotFound, ModelRegistry, RemoteModel


def test_register_returns_an_inspectable_model():
    registry = ModelRegistry()
    fraud = registry.register(
        "fraud",
        provider="kserve",
        endpoint="http://127.0.0.1:8080/",
        version="v1",
        batch_size=16,
        retries=2,
        input_name="features",
    )
    assert isinstance(fraud, RemoteModel)
    assert registry["fraud"] is fraud and "fraud" in registry
    assert fraud.settings.endpoint == "http://127.0.0.1:8080"
    assert fraud.settings.retries.attempts == 3
    assert fraud.runner.provider.url == "http://127.0.0.1:8080/v2/models/fraud/versions/v1/infer"


def test_register_as_a_decorator_names_the_model_after_its_preprocessor():
    registry = ModelRegistry()

    @registry.register(provider="kserve", endpoint="http://127.0.0.1:8080")
    def churn(customer):
        return customer["features"]

    assert isinstance(churn, RemoteModel) and churn.name == "churn"
    assert churn.prepare({"features": [1.0]}) == [1.0]


def test_the_name_may_be_given_as_a_keyword():
    registry = ModelRegistry()
    fraud = registry.register(name="fraud", provider="kserve", endpoint="http://127.0.0.1:8080")
    assert isinstance(fraud, RemoteModel) and registry["fraud"] is fraud
    with pytest.raises(ConfigurationError, match="must be a string"):
        registry.register(name=42, provider="kserve", endpoint="http://127.0.0.1:8080")


def test_a_named_registration_may_decorate_its_preprocessor():
    registry = ModelRegistry()

    @registry.register(name="churn", provider="kserve", endpoint="http://127.0.0.1:8080")
    def features(customer):
        return customer["features"]

    assert isinstance(features, RemoteModel) and features is registry["churn"]
    assert features.prepare({"features": [1.0]}) == [1.0]
    with pytest.raises(TypeError, match=r"await model\.predict"):
        features([1.0])


def test_unknown_provider_lists_the_known_ones():
    with pytest.raises(ConfigurationError, match=r"unknown provider 'kservee'.*kserve"):
        ModelRegistry().register("m", provider="kservee", endpoint="http://127.0.0.1:1")


def test_unknown_option_is_named_with_the_accepted_ones():
    with pytest.raises(ConfigurationError, match=r"input_nam: Extra inputs.*input_name"):
        ModelRegistry().register("m", provider="kserve", endpoint="http://x:1", input_nam="f")


def test_invalid_setting_names_the_field():
    with pytest.raises(ConfigurationError, match=r"max_concurrency: .*greater than or equal to 1"):
        ModelRegistry().register("m", provider="kserve", endpoint="http://x:1", max_concurrency=0)
    with pytest.raises(ConfigurationError, match="endpoint must start with http"):
        ModelRegistry().register("m", provider="kserve", endpoint="127.0.0.1:8080")


def test_missing_api_key_names_the_environment_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="set the environment variable OPENAI_API_KEY"):
        ModelRegistry().register(
            "gpt", provider="openai", remote_name="gpt-4o-mini", task="text_generation"
        )
    monkeypatch.setenv("MY_KEY", "sk-from-env-123456")
    m = ModelRegistry().register(
        "gpt", provider="openai", task="text_generation", api_key_env="MY_KEY"
    )
    assert m.runner.provider.endpoint.headers["Authorization"] == "Bearer sk-from-env-123456"
    assert "sk-from-env" not in repr(m.runner.provider.endpoint)


def test_secrets_stay_out_of_reprs_errors_and_logs(caplog):
    secret = "sk-live-abcdef0123456789"
    caplog.set_level(logging.DEBUG)
    registry = ModelRegistry()
    m = registry.register("gpt", provider="openai", task="text_generation", api_key=secret)
    for text in (repr(m), repr(m.settings), str(m.settings), repr(registry.models)):
        assert secret not in text
    with pytest.raises(ConfigurationError) as info:
        registry.register("gpt2", provider="openai", api_key=secret, temperature=0.2)
    assert secret not in str(info.value)
    assert secret not in caplog.text


def test_duplicate_names_and_unknown_lookups_fail_clearly():
    registry = ModelRegistry()
    registry.register("m", provider="http", endpoint="http://127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="already registered"):
        registry.register("m", provider="http", endpoint="http://127.0.0.1:1")
    with pytest.raises(ModelNotFound, match="registered: m"):
        registry["nope"]


def test_check_finds_missing_and_looping_fallbacks():
    registry = ModelRegistry()
    registry.register("a", provider="http", endpoint="http://127.0.0.1:1", fallback="b")
    with pytest.raises(ConfigurationError, match="falls back to 'b', which is not registered"):
        registry.check()
    registry.register("b", provider="http", endpoint="http://127.0.0.1:1", fallback="a")
    with pytest.raises(ConfigurationError, match="loop: a -> b -> a"):
        registry.check()
