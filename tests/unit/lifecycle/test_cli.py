"""Parsing of the lifecycle commands' arguments (the commands run in the integration tests)."""

import pytest

from faust_inference.lifecycle.cli import _change, parse


class Plane:
    """Just what _change reads of a Lifecycle: the versions of a model."""

    class versions:
        names = ("v1", "v2")
        default = "v1"

    def model_versions(self, name):
        return self.versions


class Client:
    async def read(self):
        return {}


def test_options_flags_and_positionals_are_told_apart():
    assert parse(["fraud", "v2", "--rate", "0.1"]) == (["fraud", "v2"], {"--rate": "0.1"})
    assert parse(["fraud", "--off", "--reason=why not"]) == (
        ["fraud"],
        {"--off": "1", "--reason": "why not"},
    )
    with pytest.raises(SystemExit, match="option --rate needs a value"):
        parse(["fraud", "v2", "--rate"])


async def test_commands_become_changes_from_the_cli():
    async def change(*args):
        pos, opts = parse(args[1:])
        return await _change(Client(), Plane(), args[0], pos, opts)

    c = await change("split", "fraud", "v1=90", "v2=10", "--reason", "A/B")
    assert (c.action, c.weights, c.reason, c.source) == (
        "split",
        {"v1": 90, "v2": 10},
        "A/B",
        "cli",
    )
    assert (await change("shadow", "fraud", "v2", "--rate", "0.25")).rate == 0.25
    assert (await change("shadow", "fraud", "--off")).action == "shadow_off"
    r = await change(
        "rollout",
        "fraud",
        "v2",
        "--steps",
        "5,50",
        "--dwell",
        "10",
        "--max-error-rate",
        "0.01",
        "--metric",
        "f1",
        "--min-metric",
        "0.7",
    )
    assert r.rollout.steps == (5, 50, 100) and r.rollout.dwell_s == 10
    assert (r.rollout.guards.max_error_rate, r.rollout.guards.metric) == (0.01, "f1")
    with pytest.raises(SystemExit, match="split weights look like v1=90"):
        await change("split", "fraud", "v1=90", "v2")
    with pytest.raises(SystemExit, match="no rollout running and no earlier default"):
        await change("rollback", "fraud")


async def test_without_rate_shadow_copies_every_event():
    pos, opts = parse(["fraud", "v2"], "shadow")
    assert (await _change(Client(), Plane(), "shadow", pos, opts)).rate == 1.0


# Bad input to a running app's lifecycle: a usage error before anything is read
# or written (the control client and the offline evaluation fail the test if reached).

BAD_INPUT = [
    (("shadow", "fraud", "v2", "--rate", "abc"), "shadow: --rate takes a number in (0, 1]"),
    (("shadow", "fraud", "v2", "--rate", "2"), "shadow: --rate takes a number in (0, 1]"),
    (("shadow", "fraud", "v2", "--rat", "0.1"), "shadow: unknown option --rat; shadow takes"),
    (
        ("evaluate", "fraud", "--version", "v2", "--events", "e", "--labels", "l", "--limit", "x"),
        "evaluate: --limit takes a whole number >= 1; got 'x'",
    ),
    (("rollout", "fraud", "v2", "--dwell", "x"), "rollout: --dwell takes seconds, a number >= 0"),
    (
        ("rollout", "fraud", "v2", "--max-error-rate", "2"),
        "rollout: --max-error-rate takes a number in [0, 1]; got '2'",
    ),
    (("rollout", "fraud", "v2", "--steps", "1,x"), "rollout: --steps takes increasing percentages"),
    (("rollout", "fraud", "v2", "--min-requests", "0"), "rollout: --min-requests takes a whole"),
]


@pytest.fixture
def lifecycle_app(monkeypatch):
    import faust

    from faust_inference import install
    from faust_inference.lifecycle import offline
    from faust_inference.lifecycle.control import ControlClient

    async def reached(*args, **kwargs):
        raise AssertionError("bad input reached Kafka")

    for name in ("read", "change", "write"):
        monkeypatch.setattr(ControlClient, name, reached)
    monkeypatch.setattr(offline, "evaluate_offline", reached)
    app = faust.App("unit-lifecycle-cli", broker="kafka://127.0.0.1:1", store="memory://")
    install(app)
    model = app.model("fraud", provider="kserve", endpoint="http://127.0.0.1:9", version="v1")
    model.add_version("v2")  # and so lifecycle(app)
    closed = []
    original = app.inference.aclose

    async def aclose():
        closed.append(1)
        await original()

    monkeypatch.setattr(app.inference, "aclose", aclose)
    return app, closed


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
async def test_bad_input_is_a_one_line_usage_error(lifecycle_app, args, message):
    from faust_inference.lifecycle.cli import USAGE, run_action

    app, closed = lifecycle_app

    class Shell:
        def say(self, text):
            raise AssertionError(f"said {text!r}")

    with pytest.raises(SystemExit) as raised:
        await run_action(Shell(), app, args[0], args[1:])
    first, usage = raised.value.code.split("\n", 1)  # a str: exit status 1, no traceback
    assert first.startswith(message) and usage == USAGE
    assert closed == [1]


def test_a_validation_error_names_the_option_not_the_input():
    from pydantic import ValidationError

    from faust_inference.lifecycle.cli import USAGE, _invalid
    from faust_inference.lifecycle.routing import GuardSettings

    with pytest.raises(ValidationError) as raised:
        GuardSettings(max_error_rate=2.5, min_requests=0)
    first, usage = _invalid("rollout", raised.value).code.split("\n", 1)
    assert first.startswith("rollout: --max-error-rate: ") and "; --min-requests: " in first
    assert "2.5" not in first and usage == USAGE
