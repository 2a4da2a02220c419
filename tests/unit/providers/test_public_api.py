"""The plugin API: everything a third-party provider needs is exported by faust_inference.providers."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import pytest

import faust_inference.providers as providers
from faust_inference import ConfigurationError, ModelRegistry, Predictions


def _isort_style(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions.
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


def test_all_is_sorted_and_complete():
    exported = providers.__all__
    assert list(exported) == sorted(exported, key=_isort_style)
    for name in exported:
        assert hasattr(providers, name), name
    public = {
        n
        for n in dir(providers)
        if not n.startswith("_") and not isinstance(getattr(providers, n), types.ModuleType)
    }
    assert public == set(exported)


def test_the_plugin_imports_only_the_public_api():
    tree = ast.parse(Path("tests/plugin_provider/faust_echo_provider.py").read_text())
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("faust_inference")
    }
    assert imported <= {"faust_inference.providers", "faust_inference.config"}, imported
    assert "faust_inference.providers" in imported


class Shout:
    max_batch_size = None

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    async def infer(self, inputs):
        return Predictions([f"{x}{self.suffix}".upper() for x in inputs])

    async def aclose(self) -> None:
        pass


class ShoutOptions(providers.ProviderOptions):
    suffix: str = "!"


def create_shout(settings, transports):
    return Shout(providers.parse_options(settings, ShoutOptions).suffix)


async def test_a_provider_registered_in_code_is_used_by_name():
    providers.register_provider("shout", create_shout)
    try:
        assert "shout" in providers.available_providers()
        registry = ModelRegistry()
        model = registry.register("s", provider="shout", suffix="?")
        assert await model.predict("hi") == "HI?"
        with pytest.raises(ConfigurationError, match="did you mean 'suffix'"):
            registry.register("t", provider="shout", sufix="?")
        await registry.aclose()
    finally:
        providers.unregister_provider("shout")
    with pytest.raises(ConfigurationError, match="unknown provider 'shout'"):
        ModelRegistry().register("s", provider="shout")


def test_built_in_names_cannot_be_replaced():
    with pytest.raises(ConfigurationError, match="built-in"):
        providers.register_provider("openai", create_shout)
    with pytest.raises(ConfigurationError, match="built-in"):
        providers.register_provider("vllm", create_shout)
