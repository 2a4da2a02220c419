"""Named connections: where a cloud model lives and the credentials to reach it.

Credentials belong in the deployment, not in the code that registers models
(Confluent's ``confluent flink connection create``, Flink's ``CREATE
CONNECTION``). A :class:`Connection` holds an endpoint and credentials under
a name; several models share it with ``connection="azure-prod"``. It can be
defined in code, in a TOML or JSON file, or in environment variables::

    FAUST_INFERENCE_CONNECTION_AZURE_PROD_PROVIDER=azure_openai
    FAUST_INFERENCE_CONNECTION_AZURE_PROD_ENDPOINT=https://contoso.openai.azure.com
    FAUST_INFERENCE_CONNECTION_AZURE_PROD_API_KEY=...
    FAUST_INFERENCE_CONNECTION_AZURE_PROD_API_VERSION=2024-10-21

    chat = app.model("summarize", connection="azure-prod", remote_name="gpt-4o-mini",
                     task="text_generation")

Environment variables override the fields of a connection of the same name
defined in code or in a file, so a deployment can swap a key without editing
anything. Secrets are :class:`pydantic.SecretStr`, left out of every repr and
never put in an error message.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from faust_inference.exceptions import ConfigurationError

__all__ = ["ENV_PREFIX", "FILE_ENV", "Connection", "ConnectionStore", "load_connections"]

ENV_PREFIX = "FAUST_INFERENCE_CONNECTION_"
"""``FAUST_INFERENCE_CONNECTION_<NAME>_<FIELD>`` defines or overrides a connection field."""
FILE_ENV = "FAUST_INFERENCE_CONNECTIONS_FILE"
"""Path of a TOML or JSON connections file read at the first lookup."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SECRET_FIELDS = (
    "api_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "azure_client_secret",
)
_CODE_ONLY = frozenset({"name", "credentials"})


class Connection(BaseModel):
    """An endpoint and the credentials to call it, shared by models under a name.

    Only the fields a provider uses matter to it; the rest are ignored. A
    secret field ``X`` may also be given as ``X_env``: the name of the
    environment variable that holds it (read when the connection is built).

    Example:
        >>> c = Connection(name="bedrock-eu", provider="bedrock", region="eu-west-1",
        ...                aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="s3cr3t")
        >>> c
        Connection(name='bedrock-eu', provider='bedrock', region='eu-west-1')
        >>> c.aws_secret_access_key.get_secret_value()
        's3cr3t'
    """

    # hide_input_in_errors: pydantic would otherwise quote the input (the keys,
    # or the whole dict _secrets_from_env filled in) in a ValidationError's text.
    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, hide_input_in_errors=True
    )

    name: str
    provider: str | None = None
    """Provider used by models that do not name one."""
    endpoint: str | None = None
    """Base URL; each provider appends its cloud's path layout."""
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    """Environment variable holding the API key, read when a model registers."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers for every model of this connection; the values of
    auth-like ones (``Authorization``, ``X-Api-Key``, any name containing
    ``token``, ``secret``, ``key`` or ``auth``) are treated as secrets."""
    region: str | None = None
    """AWS region, Azure region or Google Cloud location."""
    project: str | None = None
    """Google Cloud project."""
    api_version: str | None = None
    """Azure OpenAI ``api-version``."""
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    aws_profile: str | None = None
    """A profile of the shared AWS config; botocore's default chain when unset."""
    azure_tenant_id: str | None = None
    azure_client_id: str | None = None
    azure_client_secret: SecretStr | None = None
    google_credentials_file: str | None = None
    """A service-account JSON file; Application Default Credentials when unset."""
    credentials: Any = Field(default=None, exclude=True)
    """A ready SDK credential object (azure-identity ``TokenCredential``,
    ``google.auth.credentials.Credentials`` or botocore ``Credentials``); code only."""

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_env(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for field in _SECRET_FIELDS[1:]:  # api_key_env is a field of its own
            env = data.pop(f"{field}_env", None)
            if env is None:
                continue
            value = os.environ.get(env)
            if not value:
                raise ValueError(f"{field}_env names {env}, which is not set")
            data.setdefault(field, value)
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return usable_name(value, "connection")

    @model_validator(mode="after")
    def _check(self) -> Connection:
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise ValueError("endpoint must start with http:// or https://")
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise ValueError("aws_access_key_id and aws_secret_access_key go together")
        return self

    def __repr_args__(self) -> Any:
        # Secrets and credential objects are left out entirely: a repr does not
        # even say whether one is set; auth-like headers show their names only.
        # Unset fields are left out to keep it short. (Imported here: the
        # providers package imports this module.)
        from faust_inference.providers.redaction import redact_headers

        hidden = {*_SECRET_FIELDS, "credentials"}
        return [
            (k, redact_headers(v) if k == "headers" else v)
            for k, v in super().__repr_args__()
            if k not in hidden and (k == "name" or v not in (None, {}))
        ]

    def model_fields_for(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A model's registration ``fields`` completed from this connection.

        What the model gives wins; the connection fills in ``provider``,
        ``endpoint``, the API key and headers (merged, the model's first).
        """
        out = dict(fields)
        out["connection"] = self
        if out.get("provider") is None and self.provider is not None:
            out["provider"] = self.provider
        if out.get("endpoint") is None and self.endpoint is not None:
            out["endpoint"] = self.endpoint
        if out.get("api_key") is None and out.get("api_key_env") is None:
            if self.api_key is not None:
                out["api_key"] = self.api_key
            elif self.api_key_env is not None:
                out["api_key_env"] = self.api_key_env
        if self.headers:
            out["headers"] = {**self.headers, **(out.get("headers") or {})}
        return out


class ConnectionStore:
    """The connections of one model registry (``app.inference.connections``).

    Example:
        >>> store = ConnectionStore(environ={})
        >>> _ = store.add(name="local", provider="openai", endpoint="http://127.0.0.1:8000/v1")
        >>> store.get("local").endpoint
        'http://127.0.0.1:8000/v1'
    """

    __slots__ = ("_defined", "_environ", "_file", "_file_loaded")

    def __init__(
        self, *, environ: Mapping[str, str] | None = None, file: str | Path | None = None
    ) -> None:
        self._defined: dict[str, Connection] = {}
        self._environ = environ
        self._file = file
        self._file_loaded = False

    def add(self, connection: Connection | None = None, /, **fields: Any) -> Connection:
        """Define a connection in code (a :class:`Connection`, or its fields).

        Raises:
            ConfigurationError: invalid fields; the message never holds a value.
        """
        if connection is None:
            connection = _build(fields, "code")
        self._defined[connection.name] = connection
        return connection

    def load_file(self, path: str | Path) -> list[Connection]:
        """Add every connection of a TOML or JSON file; see :func:`load_connections`."""
        loaded = load_connections(path)
        for connection in loaded:
            self._defined[connection.name] = connection
        return loaded

    def get(self, name: str) -> Connection:
        """The connection ``name``, with environment overrides applied.

        Raises:
            ConfigurationError: no such connection, or its fields are invalid.
        """
        self._load_default_file()
        base = self._defined.get(name)
        overrides = _env_fields(name, self._env())
        if not overrides:
            if base is None:
                raise ConfigurationError(
                    f"no connection named {name!r}; defined: {', '.join(self.names()) or 'none'}. "
                    f"Define it in code, in the file named by {FILE_ENV}, or with "
                    f"{ENV_PREFIX}{_env_name(name)}_<FIELD> environment variables"
                )
            return base
        fields = dict(base) if base is not None else {"name": name}
        return _build({**fields, **overrides}, "environment")

    def names(self) -> list[str]:
        """Names of the connections defined in code or in a file."""
        return sorted(self._defined)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self._load_default_file()
        return name in self._defined or bool(_env_fields(name, self._env()))

    def resolve(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A model's fields with its ``connection=`` (a name or a Connection) applied."""
        ref = fields.get("connection")
        if ref is None:
            return dict(fields)
        connection = ref if isinstance(ref, Connection) else self.get(str(ref))
        return connection.model_fields_for(fields)

    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def _load_default_file(self) -> None:
        if self._file_loaded:
            return
        self._file_loaded = True
        path = self._file or self._env().get(FILE_ENV)
        if path:
            for connection in load_connections(path):
                self._defined.setdefault(connection.name, connection)


def load_connections(path: str | Path) -> list[Connection]:
    """Read connections from a TOML or JSON file (by suffix; TOML otherwise).

    Either a ``connections`` table of name -> fields, or name -> fields at
    the top level::

        [connections.bedrock-prod]
        provider = "bedrock"
        region = "us-east-1"
        aws_profile = "inference"

        [connections.azure-prod]
        provider = "azure_openai"
        endpoint = "https://contoso.openai.azure.com"
        api_key_env = "AZURE_OPENAI_API_KEY"

    Raises:
        ConfigurationError: unreadable file or an invalid connection.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read connections file {str(path)!r}: {exc}") from None
    table = data.get("connections", data) if isinstance(data, dict) else None
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigurationError(
            f"connections file {str(path)!r}: expected tables of name -> fields"
        )
    return [_build({"name": name, **fields}, str(path)) for name, fields in table.items()]


def _build(fields: Mapping[str, Any], source: str) -> Connection:
    try:
        return Connection.model_validate(dict(fields))
    except ValidationError as exc:
        # pydantic's messages may quote the input value: keep the location and
        # the reason only, never the value (it may be a secret).
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'connection'}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        name = fields.get("name", "?")
        raise ConfigurationError(f"connection {name!r} ({source}): {problems}") from None


def usable_name(value: str, kind: str) -> str:
    """``value`` if it can name a ``kind`` (a model, a connection): in URLs, topics, variables.

    Raises:
        ValueError: for a pydantic validator; the message lists what is allowed.
    """
    if not _NAME.match(value):
        raise ValueError(
            f"{value!r} is not a usable {kind} name: use letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _env_fields(name: str, environ: Mapping[str, str]) -> dict[str, Any]:
    prefix = f"{ENV_PREFIX}{_env_name(name)}_"
    known = {f.upper(): f for f in Connection.model_fields if f not in _CODE_ONLY}
    known.update({f"{f.upper()}_ENV": f"{f}_env" for f in _SECRET_FIELDS[1:]})
    fields: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(prefix):
            continue
        # Only exact field names count, so "AZURE" never reads "AZURE_PROD_..." variables.
        field = known.get(key[len(prefix) :])
        if field is None:
            continue
        if field == "headers":
            try:
                fields[field] = json.loads(value)
            except ValueError:
                raise ConfigurationError(f"{key} must be a JSON object of header names") from None
        else:
            fields[field] = value
    return fields
