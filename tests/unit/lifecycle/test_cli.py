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
