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
