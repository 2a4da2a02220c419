"""Third-party providers: a package declaring a ``faust_inference.providers`` entry point.

tests/plugin_provider is such a package (one module, one entry point). It is
pip-installed into a temporary target directory, which is put on sys.path so
that importlib.metadata finds its dist-info, and then used by name.
"""

import shutil
import subprocess
import sys

import pytest

from faust_inference import ConfigurationError, ModelRegistry
from faust_inference.providers import available_providers, provider_factory

from .cloud_fake import FakeCloud, json_reply


def test_without_the_plugin_the_name_is_unknown():
    # First in the file: the module-scoped install below has not happened yet.
    if "echo" in available_providers():
        pytest.skip("the plugin is already installed in this environment")
    with pytest.raises(ConfigurationError, match="unknown provider 'echo'"):
        ModelRegistry().register("m", provider="echo")


@pytest.fixture(scope="module")
def plugin_installed(tmp_path_factory):
    source = tmp_path_factory.mktemp("plugin-src") / "plugin_provider"
    # Build from a copy: setuptools writes build/ and egg-info next to the sources.
    shutil.copytree("tests/plugin_provider", source)
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        timeout=240,
        capture_output=True,
    )
    assert list(target.glob("faust_inference_echo_provider-*.dist-info"))
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))
    sys.modules.pop("faust_echo_provider", None)


async def test_an_installed_plugin_is_used_by_name(plugin_installed):
    registry = ModelRegistry()
    model = registry.register(
        "shout", provider="echo", suffix="!!", batch_size=4, batch_timeout=0.05
    )
    assert await model.predict_many(["a", "b"]) == ["a!!", "b!!"]
    assert type(model.runner.provider).__module__ == "faust_echo_provider"
    assert model.runner.provider.calls == 1
    assert "echo" in available_providers()
    with pytest.raises(ConfigurationError, match="suffix"):  # the plugin's own options check
        registry.register("bad", provider="echo", sufix="?")
    await registry.aclose()


async def test_builtins_win_over_a_plugin_of_the_same_name(plugin_installed):
    async with FakeCloud(
        lambda req: json_reply(
            {"choices": [{"message": {"role": "assistant", "content": "from the built-in"}}]}
        )
    ) as cloud:
        registry = ModelRegistry()
        model = registry.register(
            "chat", provider="openai", endpoint=cloud.url, task="text_generation"
        )
        assert type(model.runner.provider).__module__ == "faust_inference.providers.openai"
        assert await model.predict("hi") == "from the built-in"
        await registry.aclose()


def test_unknown_names_list_plugins_and_broken_plugins_say_why(plugin_installed):
    with pytest.raises(ConfigurationError) as info:
        ModelRegistry().register("m", provider="nope")
    message = str(info.value)
    assert "unknown provider 'nope'" in message
    for name in ("echo", "bedrock", "sagemaker", "vertex", "gemini", "azure_openai", "azureml"):
        assert name in message
    with pytest.raises(ConfigurationError, match="faust_echo_provider_missing.*failed to load"):
        provider_factory("broken")
