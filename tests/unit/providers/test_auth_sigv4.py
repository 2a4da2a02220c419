"""AWS configuration that botocore cannot read: the error names the setting and the fix.

botocore reads real files here (written to tmp_path): no AWS account is
involved, the errors come from the shared-config parsing itself.
"""

from __future__ import annotations

import pytest

from faust_inference import ConfigurationError, Connection, ModelSettings
from faust_inference.providers.auth.sigv4 import aws_signer

_AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@pytest.fixture
def aws_files(monkeypatch, tmp_path):
    """Empty shared config and credentials files, and no AWS variables."""
    pytest.importorskip("botocore")
    for var in _AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text("")
    credentials.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return config, credentials


def _fails(connection: Connection | None = None) -> str:
    settings = ModelSettings(name="m", provider="bedrock", connection=connection)
    with pytest.raises(ConfigurationError) as info:
        aws_signer(settings, "bedrock", "us-east-1", what="the bedrock provider")
    return str(info.value)


def test_a_missing_profile_names_the_setting_the_profile_and_the_files(aws_files):
    text = _fails(Connection(name="c", aws_profile="inference"))
    assert "ProfileNotFound" in text
    assert "the profile 'inference' (from the connection's aws_profile)" in text
    assert "~/.aws/config" in text and "AWS_CONFIG_FILE" in text


def test_a_missing_profile_from_the_environment_says_so(aws_files, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "nightly")
    assert "the profile 'nightly' (from AWS_PROFILE)" in _fails()


def test_half_a_key_pair_in_the_environment_names_the_missing_variable(aws_files, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDHALF7")
    text = _fails()
    assert "PartialCredentialsError" in text and "lack AWS_SECRET_ACCESS_KEY" in text
    assert "AKIDHALF7" not in text


def test_an_unreadable_credentials_file_is_named_and_its_lines_are_not_quoted(aws_files):
    _, credentials = aws_files
    credentials.write_text("[default]\naws_secret_access_key sEcr3tLine\n[[broken\n")
    text = _fails()
    assert f"the AWS config file {str(credentials)!r} cannot be read" in text
    assert "sEcr3tLine" not in text
