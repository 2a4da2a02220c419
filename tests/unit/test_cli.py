import pytest

from faust_inference import ModelRegistry
from faust_inference.cli import describe


def test_describe_lists_models_without_credentials():
    registry = ModelRegistry()
    registry.register(
        "fraud",
        provider="kserve",
        endpoint="http://127.0.0.1:8080",
        version="v1",
        batch_size=16,
        api_key="sk-secret-value-123",
    )
    registry.register("chat", provider="openai", task="text_generation", api_key="sk-other-456")
    lines = describe(registry.models.values()).splitlines()
    assert lines[0].split()[:3] == ["name", "provider", "endpoint"]
    assert lines[1].split()[:5] == ["fraud", "kserve", "http://127.0.0.1:8080", "fraud", "v1"]
    assert lines[2].split()[:3] == ["chat", "openai", "(default)"]
    assert "sk-" not in "\n".join(lines)


def test_describe_drops_userinfo_and_scrubs_the_models_secrets():
    registry = ModelRegistry()
    registry.register("fraud", provider="kserve", endpoint="http://bob:pw-s3cret-1@127.0.0.1:8080")
    registry.register(
        "chat",
        provider="openai",
        endpoint="http://127.0.0.1:8081/v1",
        remote_name="sk-live-key-in-a-name-0001",
        api_key="sk-live-key-in-a-name-0001",
        task="text_generation",
    )
    text = describe(registry.models.values())
    assert "http://127.0.0.1:8080" in text and "http://127.0.0.1:8081/v1" in text
    for leaked in ("bob", "pw-s3cret-1", "sk-live"):
        assert leaked not in text, leaked


def test_an_endpoint_with_a_query_is_refused_naming_the_options_to_use():
    from faust_inference import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"endpoint.*no query string.*api_key="):
        ModelRegistry().register(
            "m", provider="openai", endpoint="http://127.0.0.1:8081/v1?key=abcd"
        )


# The ``faust inference`` command on an app without a lifecycle: its handler is
# called as Faust's AppCommand would, with a stand-in for the command's say().


class Shell:
    def __init__(self):
        self.said = []

    def say(self, text):
        self.said.append(text)


def plain_app(name):
    import faust

    from faust_inference import install

    app = faust.App(name, broker="kafka://127.0.0.1:1", store="memory://")
    install(app)
    app.model("fraud", provider="kserve", endpoint="http://127.0.0.1:9", version="v1")
    app.model("chat", provider="openai", task="text_generation", api_key="sk-unit-cli-key-0001")
    return app


def count_closes(registry, monkeypatch):
    closed = []
    original = registry.aclose

    async def aclose():
        closed.append(1)
        await original()

    monkeypatch.setattr(registry, "aclose", aclose)
    return closed


async def run(app, action, *args):
    from faust_inference.cli import register_command

    shell = Shell()
    await register_command(app, app.inference).run(shell, action, args)
    return "\n".join(shell.said)


def test_the_commands_options_pass_click_on_an_app_without_versions():
    from faust.cli.base import cli

    plain_app("unit-cli-click")  # install(app) registers the command; no lifecycle(app)
    command = cli.commands["inference"]
    for args in (
        ["list", "--json"],
        ["predict", "fraud", "-1"],
        ["shadow", "fraud", "v2", "--rate", "0.5"],
    ):
        ctx = command.make_context("inference", list(args))
        assert (ctx.params["action"], *ctx.params["args"]) == tuple(args)


async def test_list_json_shows_the_models_without_credentials():
    import orjson

    app = plain_app("unit-cli-list")
    rows = orjson.loads(await run(app, "list", "--json"))
    assert [r["name"] for r in rows] == ["fraud", "chat"]
    assert rows[0]["endpoint"] == "http://127.0.0.1:9" and rows[0]["version"] == "v1"
    assert (rows[1]["endpoint"], rows[1]["task"]) == (None, "text_generation")
    assert "sk-unit" not in orjson.dumps(rows).decode()
    with pytest.raises(SystemExit) as raised:
        await run(app, "list", "--jsn")
    assert str(raised.value.code).startswith("list: unknown option --jsn; list takes --json\n")


async def test_predict_of_an_unknown_model_is_a_usage_error_naming_the_models(monkeypatch):
    app = plain_app("unit-cli-predict")
    closed = count_closes(app.inference, monkeypatch)
    with pytest.raises(SystemExit) as raised:
        await run(app, "predict", "nope", "[1]")
    first, *usage = raised.value.code.splitlines()  # a str: exit status 1, no traceback
    assert first == "ModelNotFound: no model named 'nope'; registered: chat, fraud"
    assert usage[0].startswith("usage: faust -A APP inference ACTION")
    assert closed == [1]


async def test_a_routing_action_without_a_lifecycle_says_what_to_add():
    app = plain_app("unit-cli-no-lifecycle")
    with pytest.raises(
        SystemExit, match=r"^shadow needs the app's lifecycle: call .*lifecycle\(app\)"
    ):
        await run(app, "shadow", "fraud", "v2", "--rate", "0.5")


def test_the_help_says_shadow_copies_every_event_without_rate():
    from faust.cli.base import cli

    plain_app("unit-cli-help")
    assert "without --rate, R is 1: every event is copied" in cli.commands["inference"].help
