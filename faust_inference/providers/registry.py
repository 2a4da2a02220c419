"""Finding a provider by name and building it from a model's settings.

Providers are imported only when a model names them, so registering an
``openai`` model never imports the KServe code, and an unknown name fails at
registration with the list of known ones.

A provider is a function that builds one from a model's settings::

    def create(settings: ModelSettings, transports: TransportPool) -> Provider

There are three ways to make one known, looked up in this order:

1. built in (``kserve``, ``openai`` ... and their aliases): these always
   win, so installing a package can never silently replace ``openai``;
2. registered in code with :func:`register_provider` (tests, notebooks, an
   application's own provider);
3. declared by an installed package as an entry point in the
   ``faust_inference.providers`` group, whose value is a module with a
   ``create`` function (or ``module:function``)::

       [project.entry-points."faust_inference.providers"]
       my_cloud = "my_package.my_cloud"
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

from faust_inference.config import ModelSettings
from faust_inference.core.provider import Provider
from faust_inference.exceptions import ConfigurationError
from faust_inference.providers.transport import TransportPool

__all__ = [
    "ENTRY_POINT_GROUP",
    "ProviderFactory",
    "available_providers",
    "create_provider",
    "provider_factory",
    "register_provider",
    "unregister_provider",
]

ProviderFactory = Callable[[ModelSettings, TransportPool], Provider]
"""``create(settings, transports) -> Provider``."""

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
_POOLED = ("http", "kserve", "openai")
"""Built-ins that take ``endpoint=[...]`` and ``hedge=`` (for the message that says so)."""
# Providers registered in code, by name (process-wide, like entry points).
_REGISTERED: dict[str, ProviderFactory] = {}


def register_provider(name: str, create: ProviderFactory) -> None:
    """Make ``provider=name`` build its provider with ``create``.

    For tests, notebooks and an application's own provider; a package that
    others install declares an entry point instead. Registering a name
    again replaces the earlier function.

    Example:
        >>> from faust_inference import ModelRegistry, Predictions
        >>> class Echo:
        ...     max_batch_size = None
        ...     async def infer(self, inputs):
        ...         return Predictions(list(inputs))
        ...     async def aclose(self):
        ...         pass
        >>> register_provider("echo-doc", lambda settings, transports: Echo())
        >>> ModelRegistry().register("m", provider="echo-doc").settings.provider
        'echo-doc'
        >>> unregister_provider("echo-doc")

    Raises:
        ConfigurationError: ``name`` is a built-in provider or alias, or
            ``create`` is not callable.
    """
    if name in _BUILTIN or name in _ALIASES:
        raise ConfigurationError(
            f"{name!r} is a built-in provider and cannot be replaced; register another name"
        )
    if not callable(create):
        raise ConfigurationError(
            f"register_provider({name!r}, create): create must be callable, "
            f"got {type(create).__name__}"
        )
    _REGISTERED[name] = create


def unregister_provider(name: str) -> None:
    """Forget a provider registered with :func:`register_provider` (no error if unknown)."""
    _REGISTERED.pop(name, None)


def _plugins() -> dict[str, EntryPoint]:
    """Providers other packages declare, read afresh so a new install is seen."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_providers() -> list[str]:
    """Names accepted as ``provider=``: built-ins, aliases, registered ones and plugins.

    Example:
        >>> "kserve" in available_providers()
        True
    """
    return sorted({*_BUILTIN, *_ALIASES, *_REGISTERED, *_plugins()})


def create_provider(settings: ModelSettings, transports: TransportPool) -> Provider:
    """Build the provider a model's settings name.

    Raises:
        ConfigurationError: unknown provider, a plugin that fails to load, bad
            option or missing credential, or several endpoints (or ``hedge=``)
            for a provider that calls one URL.
    """
    provider = provider_factory(settings.provider, model=settings.name)(settings, transports)
    if not getattr(provider, "pooled", False):
        asked = [
            what
            for what, given in (
                (f"endpoint= with {len(settings.endpoints)} URLs", len(settings.endpoints) > 1),
                ("hedge=", settings.hedge is not None),
            )
            if given
        ]
        if asked:
            raise ConfigurationError(
                f"model {settings.name!r}: the {settings.provider} provider calls one URL, "
                f"so {' and '.join(asked)} would be ignored; replica pools and hedging are "
                f"for the {', '.join(_POOLED)} providers (and their aliases). Give one "
                "endpoint, and for another region or deployment register a second model "
                "and name it in fallback="
            )
    return provider


def provider_factory(name: str, *, model: str = "?") -> ProviderFactory:
    """The ``create`` function known under ``name`` (built-in, registered, then plugins).

    Raises:
        ConfigurationError: no provider has that name, or its plugin cannot be loaded.
    """
    canonical = _ALIASES.get(name, name)
    target = _BUILTIN.get(canonical)
    if target is not None:
        module_name, _, attr = target.partition(":")
        return _as_factory(importlib.import_module(module_name), attr or "create", name)
    registered = _REGISTERED.get(name)
    if registered is not None:
        return registered
    plugin = _plugins().get(name)
    if plugin is None:
        raise ConfigurationError(
            f"model {model!r}: unknown provider {name!r}; "
            f"use one of {', '.join(available_providers())} "
            "(or register one: faust_inference.providers.register_provider)"
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
