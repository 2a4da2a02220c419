import pytest
from pydantic import ValidationError

from faust_inference import ModelSettings, RetrySettings


def test_settings_are_frozen_and_strict():
    s = ModelSettings(name="m", provider="kserve")
    with pytest.raises(ValidationError):
        s.batch_size = 4  # type: ignore[misc]
    with pytest.raises(ValidationError, match="batch_sizee"):
        ModelSettings(name="m", provider="kserve", batch_sizee=4)


def test_retries_shorthand_and_dict():
    assert ModelSettings(name="m", provider="x", retries=0).retries.attempts == 1
    assert ModelSettings(name="m", provider="x", retries={"max_retries": 5}).retries == (
        RetrySettings(max_retries=5)
    )


def test_default_output_none_counts_as_set():
    assert not ModelSettings(name="m", provider="x").has_default_output
    assert ModelSettings(name="m", provider="x", default_output=None).has_default_output


@pytest.mark.parametrize("name", ["", "has space", "../up", "-lead"])
def test_unusable_names_are_rejected(name):
    with pytest.raises(ValidationError, match="not a usable model name"):
        ModelSettings(name=name, provider="x")


def test_a_model_cannot_fall_back_on_itself():
    with pytest.raises(ValidationError, match="own fallback"):
        ModelSettings(name="m", provider="x", fallback="m")


# A short secret: long ones are easy to spot, short ones are what a check misses.
PASSWORD = "pw9z"


@pytest.mark.parametrize(
    ("endpoint", "shown"),
    [
        (f"ftp://bob:{PASSWORD}@10.0.0.1:21/models?key=k1x2", "'ftp://10.0.0.1:21/models'"),
        (f"bob:{PASSWORD}@10.0.0.1:8080/v1", "'10.0.0.1:8080/v1'"),  # the scheme forgotten
        (
            [f"http://bob:{PASSWORD}@10.0.0.1:8080", f"http://bob:{PASSWORD}@10.0.0.1:8080/"],
            "'http://10.0.0.1:8080' more than once",
        ),
    ],
    ids=["scheme", "no-scheme", "twice"],
)
def test_endpoint_errors_show_the_url_without_its_password(endpoint, shown):
    with pytest.raises(ValidationError) as info:
        ModelSettings(name="m", provider="x", endpoint=endpoint)
    # The messages app.model() turns into its ConfigurationError.
    messages = " ".join(err["msg"] for err in info.value.errors())
    assert shown in messages
    for leaked in (PASSWORD, "bob", "k1x2"):
        assert leaked not in messages and leaked not in str(info.value)


@pytest.mark.parametrize(
    "fields",
    [
        {"api_key": PASSWORD, "fallback": "m"},  # a model-level error quotes the whole input
        {"headers": {"x-api-key": PASSWORD}, "endpoint": []},
        {"connection": {"name": "c", "aws_access_key_id": PASSWORD}},
        {"connection": {"name": "c", "endpoint": "ftp://h", "api_key": PASSWORD}},
    ],
    ids=["api_key", "header", "aws-pair", "connection-key"],
)
def test_a_validation_error_never_quotes_a_secret(fields):
    with pytest.raises(ValidationError) as info:
        ModelSettings(name="m", provider="x", **fields)
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
    assert info.value.errors()  # the reasons are all still there, without the values


def test_auth_like_header_values_are_masked_in_the_repr():
    s = ModelSettings(
        name="m",
        provider="x",
        headers={
            "X-Api-Key": "gw-key-5151",
            "Authorization": "Bearer tok-6161",
            "X-Gateway-Token": "gt-7171",
            "x-client-secret": "cs-8181",
            "X-Auth-User": "au-9191",
            "x-team": "fraud",
        },
    )
    shown = repr(s) + str(s)
    for secret in ("gw-key-5151", "tok-6161", "gt-7171", "cs-8181", "au-9191"):
        assert secret not in shown
    assert "'X-Api-Key': '***'" in shown and "'x-team': 'fraud'" in shown
    assert s.headers["X-Api-Key"] == "gw-key-5151"  # the value itself is untouched
