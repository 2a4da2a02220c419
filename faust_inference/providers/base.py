"""Finding a provider by name and building it from a model's settings.

Providers are imported only when a model names them, so registering an
``openai`` model never imports the KServe code, and an unknown name fails at
registration with the list of known ones.

A provider module exposes one function::

    def create(settings: ModelSettings, transports: TransportPool) -> Provider
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from faust_inference.config import ModelSettings
from faust_inference.core.provider import Provider
from faust_inference.exceptions import ConfigurationError
from faust_inference.providers.transport import HttpTransport, TransportPool

__all__ = [
    "JsonEndpoint",
    "ProviderFactory",
    "ProviderOptions",
    "available_providers",
    "create_provider",
    "json_endpoint",
    "parse_options",
    "resolve_api_key",
]

ProviderFactory = Callable[[ModelSettings, TransportPool], Provider]

_BUILTIN: dict[str, str] = {
    "http": "faust_inference.providers.http",
    "kserve": "faust_inference.providers.kserve",
    "openai": "faust_inference.providers.openai",
}
_ALIASES: dict[str, str] = {
    "open_inference": "kserve",
    "oip": "kserve",
    "mlserver": "kserve",
    "triton": "kserve",
    "vllm": "openai",
}

OptionsT = TypeVar("OptionsT", bound="ProviderOptions")


class ProviderOptions(BaseModel):
    """Base of every provider's options: frozen, and unknown names are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


def available_providers() -> list[str]:
    """Names accepted as ``provider=``."""
    return sorted({*_BUILTIN, *_ALIASES})


def create_provider(settings: ModelSettings, transports: TransportPool) -> Provider:
    """Build the provider a model's settings name.

    Raises:
        ConfigurationError: unknown provider, bad option or missing credential.
    """
    name = _ALIASES.get(settings.provider, settings.provider)
    module_name = _BUILTIN.get(name)
    if module_name is None:
        raise ConfigurationError(
            f"model {settings.name!r}: unknown provider {settings.provider!r}; "
            f"use one of {', '.join(available_providers())}"
        )
    factory: ProviderFactory = importlib.import_module(module_name).create
    return factory(settings, transports)


def parse_options(settings: ModelSettings, options_type: type[OptionsT]) -> OptionsT:
    """Validate a model's provider options, naming the bad one and the accepted ones."""
    try:
        return options_type.model_validate(settings.options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}"
            for err in exc.errors()
        )
        accepted = ", ".join(sorted(options_type.model_fields)) or "none"
        raise ConfigurationError(
            f"model {settings.name!r} (provider {settings.provider!r}): {problems}. "
            f"Options this provider accepts: {accepted}"
        ) from None


def resolve_api_key(
    settings: ModelSettings, *, default_env: str | None, required: bool
) -> str | None:
    """The API key: given explicitly, or read from the environment at registration.

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


@dataclass(frozen=True, slots=True)
class JsonEndpoint:
    """One URL of a model server, with the headers every request to it carries.

    Providers post through this so that credentials travel in one place and
    are scrubbed from every error; the repr shows the URL only.
    """

    url: str
    transport: HttpTransport
    headers: Mapping[str, str]
    secrets: tuple[str, ...] = ()

    async def post(self, body: Any) -> Any:
        """POST ``body`` as JSON; the decoded answer, or one of our errors."""
        return await self.transport.post_json(
            self.url, body, headers=self.headers, secrets=self.secrets
        )

    def __repr__(self) -> str:
        return f"JsonEndpoint({self.url!r})"


def json_endpoint(
    settings: ModelSettings,
    transports: TransportPool,
    url: str,
    *,
    default_env: str | None = None,
    required: bool = False,
    auth_header: str = "Authorization",
    auth_scheme: str = "Bearer",
) -> JsonEndpoint:
    """The endpoint for ``url``, with the model's headers and API key (if any).

    Raises:
        ConfigurationError: ``required`` and no API key is configured.
    """
    key = resolve_api_key(settings, default_env=default_env, required=required)
    headers = dict(settings.headers)
    if key:
        headers[auth_header] = f"{auth_scheme} {key}" if auth_scheme else key
    return JsonEndpoint(url, transports.get(url), headers, (key,) if key else ())


def describe(value: Any) -> str:
    """A short, safe description of an input value for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
