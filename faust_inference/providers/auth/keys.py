"""Static credentials: an API key from the settings or the environment, ``Basic`` from a URL.

Static credentials travel as plain headers of an
:class:`~faust_inference.providers.Endpoint`, which also keeps the strings
to scrub from every message.
"""

from __future__ import annotations

import base64
import os
from urllib.parse import unquote, urlsplit, urlunsplit

from faust_inference.config import ModelSettings
from faust_inference.exceptions import ConfigurationError

__all__ = ["api_key_header", "basic_auth", "resolve_api_key"]


def resolve_api_key(
    settings: ModelSettings, *, default_env: str | None, required: bool
) -> str | None:
    """The API key: given explicitly, or read from the environment at registration.

    Example:
        >>> s = ModelSettings(name="m", provider="openai", api_key="sk-x")
        >>> resolve_api_key(s, default_env="OPENAI_API_KEY", required=True)
        'sk-x'

    Raises:
        ConfigurationError: ``required`` and no key; the message names the
            environment variable to set, never a value.
    """
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    env = settings.api_key_env or default_env
    value = os.environ.get(env) if env else None
    if value:
        return value
    if required:
        where = f"set the environment variable {env}" if env else "pass api_key="
        raise ConfigurationError(
            f"model {settings.name!r} (provider {settings.provider!r}) needs an API key: "
            f"{where} (or pass api_key_env= to name another variable)"
        )
    return None


def api_key_header(
    key: str | None, *, header: str = "Authorization", scheme: str = "Bearer"
) -> dict[str, str]:
    """The header carrying ``key`` (none without a key).

    Example:
        >>> api_key_header("k-1", header="api-key", scheme="")
        {'api-key': 'k-1'}
    """
    if not key:
        return {}
    return {header: f"{scheme} {key}" if scheme else key}


def basic_auth(url: str) -> tuple[str, dict[str, str], tuple[str, ...]]:
    """Split a URL's userinfo into an ``Authorization: Basic`` header.

    Returns the URL without userinfo, the header (empty without userinfo)
    and the secrets to scrub (the password, ``user:password`` and its base64).

    Example:
        >>> basic_auth("http://bob:pw-123@127.0.0.1:8080/v1")[:2]
        ('http://127.0.0.1:8080/v1', {'Authorization': 'Basic Ym9iOnB3LTEyMw=='})
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}, ()
    netloc = parts.netloc.rpartition("@")[2]
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    token = base64.b64encode(pair.encode()).decode()
    secrets = tuple(s for s in (unquote(parts.password or ""), pair, token) if s)
    return bare, {"Authorization": f"Basic {token}"}, secrets
