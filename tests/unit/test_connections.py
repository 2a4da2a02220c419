"""Named connections: defined in code, files and environment variables; secrets never shown."""

import json
import logging

import pytest
from pydantic import ValidationError

from faust_inference import (
    ClientError,
    ConfigurationError,
    Connection,
    ConnectionStore,
    ModelRegistry,
)
from faust_inference.connections import ENV_PREFIX, FILE_ENV, load_connections

from .providers.cloud_fake import FakeCloud, json_reply

SECRET = "sk-connection-secret-0123456789"
AWS_SECRET = "aws/secret/key/0123456789abcdefghijklmnopq"


def test_repr_str_and_json_never_show_secrets():
    conn = Connection(
        name="prod",
        provider="azure_openai",
        endpoint="https://x.openai.azure.com",
        api_key=SECRET,
        aws_access_key_id="AKIDSECRETID",
        aws_secret_access_key=AWS_SECRET,
        azure_client_secret="client-secret-xyz",
        credentials=object(),
    )
    shown = repr(conn) + str(conn) + conn.model_dump_json() + repr(conn.model_dump())
    for secret in (SECRET, AWS_SECRET, "AKIDSECRETID", "client-secret-xyz"):
        assert secret not in shown
    assert repr(conn) == (
        "Connection(name='prod', provider='azure_openai', endpoint='https://x.openai.azure.com')"
    )
    assert conn.api_key.get_secret_value() == SECRET


def test_validation_errors_name_the_field_not_the_value():
    store = ConnectionStore(environ={})
    with pytest.raises(ConfigurationError) as info:
        store.add(name="half", aws_access_key_id="AKIDHALFPAIR")
    assert "go together" in str(info.value) and "AKIDHALFPAIR" not in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        store.add(name="bad", endpoint="ftp://host", api_key=SECRET, region=7)
    assert SECRET not in str(info.value) and "region" in str(info.value)


def test_environment_defines_and_overrides_connections():
    env = {
        f"{ENV_PREFIX}AZURE_PROD_PROVIDER": "azure_openai",
        f"{ENV_PREFIX}AZURE_PROD_ENDPOINT": "https://prod.openai.azure.com",
        f"{ENV_PREFIX}AZURE_PROD_API_KEY": SECRET,
        f"{ENV_PREFIX}AZURE_PROD_API_VERSION": "2024-06-01",
        f"{ENV_PREFIX}AZURE_PROD_HEADERS": '{"x-team": "fraud"}',
        f"{ENV_PREFIX}AZURE_ENDPOINT": "https://other.openai.azure.com",
        f"{ENV_PREFIX}AZURE_PROD_NOT_A_FIELD": "ignored",
    }
    store = ConnectionStore(environ=env)
    prod = store.get("azure-prod")
    assert prod.endpoint == "https://prod.openai.azure.com"  # not the "azure" connection's
    assert prod.api_key.get_secret_value() == SECRET and prod.api_version == "2024-06-01"
    assert prod.headers == {"x-team": "fraud"}
    assert "azure-prod" in store and "azure" in store and "nothing" not in store
    assert store.get("azure").endpoint == "https://other.openai.azure.com"

    store.add(
        name="azure-prod",
        provider="azure_openai",
        region="westeurope",
        endpoint="https://code.openai.azure.com",
    )
    merged = store.get("azure-prod")
    assert merged.endpoint == "https://prod.openai.azure.com"  # the environment wins
    assert merged.region == "westeurope"  # fields it does not set stay


def test_unknown_connection_says_where_to_define_it():
    store = ConnectionStore(environ={})
    store.add(name="one")
    with pytest.raises(ConfigurationError) as info:
        store.get("bedrock-eu")
    message = str(info.value)
    assert "defined: one" in message and f"{ENV_PREFIX}BEDROCK_EU_<FIELD>" in message


def test_toml_and_json_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_AWS_SECRET", AWS_SECRET)
    toml = tmp_path / "connections.toml"
    toml.write_text(
        '[connections.bedrock-prod]\nprovider = "bedrock"\nregion = "us-east-1"\n'
        'aws_access_key_id = "AKIDFROMFILE"\naws_secret_access_key_env = "MY_AWS_SECRET"\n\n'
        '[connections.azure-prod]\nprovider = "azure_openai"\n'
        'endpoint = "https://contoso.openai.azure.com"\napi_key_env = "AZURE_OPENAI_API_KEY"\n'
    )
    loaded = {c.name: c for c in load_connections(toml)}
    assert loaded["bedrock-prod"].aws_secret_access_key.get_secret_value() == AWS_SECRET
    assert loaded["azure-prod"].api_key_env == "AZURE_OPENAI_API_KEY"
    js = tmp_path / "connections.json"
    js.write_text(
        json.dumps({"gcp": {"provider": "vertex", "project": "acme", "region": "europe-west4"}})
    )
    assert load_connections(js)[0].project == "acme"
    bad = tmp_path / "bad.toml"
    bad.write_text('[x]\naws_secret_access_key_env = "UNSET_VARIABLE_FOR_TEST"\n')
    with pytest.raises(ConfigurationError, match="UNSET_VARIABLE_FOR_TEST, which is not set"):
        load_connections(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[x\n")
    with pytest.raises(ConfigurationError, match="cannot read connections file"):
        load_connections(broken)


async def test_models_share_a_connection_from_the_default_file(tmp_path, monkeypatch, caplog):
    """Two models, one connection read from FAUST_INFERENCE_CONNECTIONS_FILE; the key is
    sent but appears in no log, repr or error."""

    def answer(req):
        if req.headers.get("Authorization") != f"Bearer {SECRET}":
            return json_reply({"error": f"bad key {req.headers.get('Authorization')}"}, 401)
        body = req.json
        if "input" in body:
            return json_reply(
                {
                    "data": [
                        {"index": i, "embedding": [float(len(t))]}
                        for i, t in enumerate(body["input"])
                    ]
                }
            )
        return json_reply({"choices": [{"message": {"content": body["messages"][-1]["content"]}}]})

    caplog.set_level(logging.DEBUG)
    async with FakeCloud(answer) as cloud:
        path = tmp_path / "c.toml"
        path.write_text(
            f'[local]\nprovider = "openai"\nendpoint = "{cloud.url}/v1"\n'
            f'api_key = "{SECRET}"\nheaders = {{ "x-team" = "fraud" }}\n'
        )
        monkeypatch.setenv(FILE_ENV, str(path))
        registry = ModelRegistry()
        chat = registry.register("chat", connection="local", task="text_generation")
        embed = registry.register(
            "embed", connection="local", task="embedding", headers={"x-extra": "1"}
        )
        assert await chat.predict("hi") == "hi"
        assert await embed.predict("abc") == [3.0]
        assert cloud.requests[0].path == "/v1/chat/completions"
        assert cloud.requests[1].path == "/v1/embeddings"
        assert cloud.requests[1].headers["x-team"] == "fraud"
        assert cloud.requests[1].headers["x-extra"] == "1"
        assert chat.settings.connection is embed.settings.connection

        # The model's own settings win over the connection's.
        other = registry.register(
            "other",
            connection="local",
            task="text_generation",
            api_key="sk-wrong-key-000000",
            retries=0,
        )
        with pytest.raises(ClientError) as info:
            await other.predict("x")
        shown = repr(registry.models) + repr(chat.settings) + str(info.value) + caplog.text
        assert SECRET not in shown and "sk-wrong-key-000000" not in str(info.value)
        await registry.aclose()


def test_connection_objects_and_provider_from_the_connection():
    registry = ModelRegistry()
    conn = Connection(name="kserve-local", provider="kserve", endpoint="http://127.0.0.1:9")
    model = registry.register("fraud", connection=conn)
    assert model.settings.provider == "kserve" and model.settings.endpoint == "http://127.0.0.1:9"
    overridden = registry.register("fraud2", connection=conn, endpoint="http://127.0.0.1:10")
    assert overridden.settings.endpoint == "http://127.0.0.1:10"
    with pytest.raises(ConfigurationError, match="provider"):
        registry.register("none", connection=Connection(name="bare"))


@pytest.mark.parametrize("name", ["x y", "-lead", "a/b"])
def test_an_unusable_connection_name_says_which_characters_are_allowed(name):
    with pytest.raises(ConfigurationError) as info:
        ConnectionStore(environ={}).add(name=name, provider="openai")
    text = str(info.value)
    assert f"name: Value error, {name!r} is not a usable connection name" in text
    assert "letters, digits, '.', '_' or '-', starting with a letter or digit" in text


def test_a_validation_error_of_a_connection_never_quotes_its_secrets(monkeypatch):
    monkeypatch.setenv("TEST_AWS_ID", "AK7q")
    monkeypatch.setenv("TEST_AWS_SECRET", "sK8r")
    attempts = [
        {"endpoint": "ftp://host", "api_key": "k3y9"},
        {"aws_access_key_id": "AK7q"},  # half a pair
        {
            "endpoint": "ftp://host",
            "aws_access_key_id_env": "TEST_AWS_ID",
            "aws_secret_access_key_env": "TEST_AWS_SECRET",
        },
    ]
    for fields in attempts:
        with pytest.raises(ValidationError) as info:  # built directly: pydantic's own error
            Connection(name="c", **fields)
        text = str(info.value) + repr(info.value)
        assert "Value error" in text, fields  # the reason is still given
        for secret in ("AK7q", "sK8r", "k3y9"):
            assert secret not in text, (fields, secret)


def test_auth_like_header_values_are_masked_in_a_connections_repr():
    headers = {
        "x-api-key": "gw-key-4242",
        "Proxy-Authorization": "Basic cHc6cHc=",
        "x-team": "fraud",
    }
    conn = Connection(name="gw", headers=headers)
    assert repr(conn) == (
        "Connection(name='gw', headers={'x-api-key': '***', 'Proxy-Authorization': '***', "
        "'x-team': 'fraud'})"
    )
