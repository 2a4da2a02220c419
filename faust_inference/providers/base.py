"""Finding a provider by name and building it from a model's settings.

Providers are imported only when a model names them, so registering an
``openai`` model never imports the KServe code, and an unknown name fails at
registration with the list of known ones.

A provider module exposes one function::

    def create(settings: ModelSettings, transports: TransportPool) -> Provider

Third-party packages add providers without touching this package: they
declare an entry point in the ``faust_inference.providers`` group whose value
is that module (or ``module:function``)::

    [options.entry_points]
    faust_inference.providers =
        my_cloud = my_package.my_cloud

Built-in names win over plugins of the same name, so installing a package
can never silently replace ``openai``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from faust_inference.config import ModelSettings
from faust_inference.core.provider import Provider
from faust_inference.exceptions import ConfigurationError, InferenceError, ResponseDecodeError
from faust_inference.providers.transport import HttpTransport, TransportPool

__all__ = [
    "ENTRY_POINT_GROUP",
    "JsonEndpoint",
    "ProviderFactory",
    "ProviderOptions",
    "available_providers",
    "create_provider",
    "json_endpoint",
    "parse_answer",
    "parse_options",
    "provider_factory",
    "resolve_api_key",
]

ProviderFactory = Callable[[ModelSettings, TransportPool], Provider]

ENTRY_POINT_GROUP = "faust_inference.providers"

# name -> "module" (its ``create``) or "module:function".
_BUILTIN: dict[str, str] = {
    "azure_openai": "faust_inference.providers.azure_openai",
    "azureml": "faust_inference.providers.azureml",
    "bedrock": "faust_inference.providers.bedrock",
    "gemini": "faust_inference.providers.vertex:create_gemini",
    "http": "faust_inference.providers.http",
    "kserve": "faust_inference.providers.kserve",
    "openai": "faust_inference.providers.openai",
    "sagemaker": "faust_inference.providers.sagemaker",
    "vertex": "faust_inference.providers.vertex",
}
_ALIASES: dict[str, str] = {
    "azure": "azure_openai",
    "azure_ml": "azureml",
    "google_ai": "gemini",
    "vertex_ai": "vertex",
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


def _plugins() -> dict[str, EntryPoint]:
    """Providers other packages declare, read afresh so a new install is seen."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_providers() -> list[str]:
    """Names accepted as ``provider=``: built-ins, their aliases and installed plugins."""
    return sorted({*_BUILTIN, *_ALIASES, *_plugins()})


def create_provider(settings: ModelSettings, transports: TransportPool) -> Provider:
    """Build the provider a model's settings name.

    Raises:
        ConfigurationError: unknown provider, a plugin that fails to load, bad
            option or missing credential.
    """
    return provider_factory(settings.provider, model=settings.name)(settings, transports)


def provider_factory(name: str, *, model: str = "?") -> ProviderFactory:
    """The ``create`` function registered under ``name`` (built-in first, then plugins).

    Raises:
        ConfigurationError: no provider has that name, or its plugin cannot be loaded.
    """
    canonical = _ALIASES.get(name, name)
    target = _BUILTIN.get(canonical)
    if target is not None:
        module_name, _, attr = target.partition(":")
        return _as_factory(importlib.import_module(module_name), attr or "create", name)
    plugin = _plugins().get(name)
    if plugin is None:
        raise ConfigurationError(
            f"model {model!r}: unknown provider {name!r}; "
            f"use one of {', '.join(available_providers())}"
        )
    try:
        loaded = plugin.load()
    except Exception as exc:
        raise ConfigurationError(
            f"provider {name!r} from entry point {plugin.value!r} failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return _as_factory(loaded, "create", name)


def _as_factory(loaded: Any, attr: str, name: str) -> ProviderFactory:
    factory = getattr(loaded, attr, None) if isinstance(loaded, ModuleType) else loaded
    if not callable(factory):
        raise ConfigurationError(
            f"provider {name!r} is not usable: expected a module with a create() "
            f"function or a callable, got {type(loaded).__name__}"
        )
    result: ProviderFactory = factory
    return result


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


def parse_answer(
    parser: Callable[[Any, int], Sequence[Any]], answer: Any, n: int, url: str
) -> list[Any]:
    """Run a user's ``response_parser``; its failure is a malformed answer, not a crash.

    Raises:
        ResponseDecodeError: the parser raised, or returned other than ``n`` outputs.
    """
    try:
        outputs = list(parser(answer, n))
    except InferenceError:
        raise
    except Exception as exc:
        raise ResponseDecodeError(
            f"{url}: response_parser failed: {type(exc).__name__}: {exc}"
        ) from exc
    if len(outputs) != n:
        raise ResponseDecodeError(f"{url}: {len(outputs)} outputs for {n} inputs")
    return outputs


def describe(value: Any) -> str:
    """A short, safe description of an input value for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
