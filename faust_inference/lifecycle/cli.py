"""``faust -A app inference ...``: the lifecycle commands, against a running app.

Each command that changes something writes one control record (see
:mod:`~faust_inference.lifecycle.control`); every running worker applies it
within a second. No worker needs to run in the shell that issues it::

    faust -A myapp inference list
    faust -A myapp inference switch fraud v2 --reason "v2 passed review"
    faust -A myapp inference split fraud v1=90 v2=10
    faust -A myapp inference shadow fraud v2 --rate 0.1   # without --rate: every event
    faust -A myapp inference shadow fraud --off
    faust -A myapp inference rollout fraud v2 --steps 1,10,50,100 --dwell 60 --max-error-rate 0.02
    faust -A myapp inference rollback fraud
    faust -A myapp inference stats fraud
    faust -A myapp inference history fraud
    faust -A myapp inference evaluate fraud --version v2 --events scored --labels labels

Add ``--json`` to ``list``, ``stats``, ``history`` and ``evaluate`` for
machine-readable output. An option an action does not take, or a value out of
its range, is a usage error (exit status 1, the problem in one line, then
:data:`USAGE`), found before anything is read or written::

    $ faust -A myapp inference shadow fraud v2 --rate abc
    shadow: --rate takes a number in (0, 1], the share of events copied; got 'abc'
    usage: faust -A APP inference ACTION ...
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from faust_inference.exceptions import ConfigurationError, InferenceError
from faust_inference.lifecycle.control import ControlClient
from faust_inference.lifecycle.routing import Change, RoutingState

__all__ = ["ACCEPTED", "ACTIONS", "USAGE", "allow_options", "parse", "run_action"]

ACTIONS = frozenset(
    {"list", "switch", "split", "shadow", "rollout", "rollback", "stats", "history", "evaluate"}
)

USAGE = """usage: faust -A APP inference ACTION ...
  list [--json]                         models; versions, routing, in flight, error rates
  predict NAME JSON                     call the model once, with its limits and retries
  switch NAME VERSION [--reason TEXT]   send all traffic to VERSION
  split NAME V1=90 V2=10 [--reason T]   sticky split by event key
  shadow NAME VERSION [--rate R]        copy a share R in (0, 1] of the traffic to VERSION;
                                        without --rate, R is 1: every event is copied
  shadow NAME --off                     stop shadow traffic
  rollout NAME VERSION [--steps 1,10,50,100] [--dwell 60] [--max-error-rate 0.05]
          [--max-p99 SECONDS] [--max-p99-ratio R] [--min-agreement A]
          [--metric NAME --min-metric X | --max-metric X] [--min-requests N]
  rollback NAME [--reason TEXT]         end a rollout, or switch back to the previous default
  stats NAME [--json]                   figures per version over every worker
  history NAME [--json]                 the audit trail of routing changes
  evaluate NAME --version V --events TOPIC --labels TOPIC [--limit N] [--label-field F]
           [--json]"""
"""What ``faust inference`` prints on a usage error, and its ``--help``."""

_FLAGS = frozenset({"--off", "--json"})

_GUARD_OPTIONS: dict[str, str] = {
    "--max-error-rate": "max_error_rate",
    "--max-p99": "max_p99_s",
    "--max-p99-ratio": "max_p99_ratio",
    "--min-agreement": "min_agreement",
    "--metric": "metric",
    "--min-metric": "min_metric",
    "--max-metric": "max_metric",
    "--min-requests": "min_requests",
}
"""The rollout's guard options, and the GuardSettings field each sets."""

ACCEPTED: dict[str, frozenset[str]] = {
    "list": frozenset({"--json"}),
    "switch": frozenset({"--reason"}),
    "split": frozenset({"--reason"}),
    "shadow": frozenset({"--rate", "--off", "--reason"}),
    "rollout": frozenset({"--steps", "--dwell", "--reason", *_GUARD_OPTIONS}),
    "rollback": frozenset({"--reason"}),
    "stats": frozenset({"--json"}),
    "history": frozenset({"--json"}),
    "evaluate": frozenset(
        {"--version", "--events", "--labels", "--limit", "--label-field", "--json"}
    ),
}
"""The options each action takes; any other is a usage error (a typo must not pass)."""


def _steps(raw: str) -> tuple[float, ...]:
    return tuple(float(s) for s in raw.split(","))


def _finite(x: Any) -> bool:
    return all(math.isfinite(v) for v in (x if isinstance(x, tuple) else (x,)))


_NUMBERS: dict[str, tuple[Callable[[str], Any], Callable[[Any], bool], str]] = {
    "--rate": (float, lambda x: 0 < x <= 1, "a number in (0, 1], the share of events copied"),
    "--limit": (int, lambda n: n >= 1, "a whole number >= 1"),
    "--dwell": (float, lambda x: x >= 0, "seconds, a number >= 0"),
    "--steps": (
        _steps,
        lambda s: all(0 < x <= 100 for x in s) and list(s) == sorted(set(s)),
        "increasing percentages in (0, 100], comma-separated, like 1,10,50,100",
    ),
    "--max-error-rate": (float, lambda x: 0 <= x <= 1, "a number in [0, 1]"),
    "--max-p99": (float, lambda x: x > 0, "seconds, a number > 0"),
    "--max-p99-ratio": (float, lambda x: x > 0, "a number > 0"),
    "--min-agreement": (float, lambda x: 0 <= x <= 1, "a number in [0, 1]"),
    "--min-metric": (float, lambda x: True, "a number"),
    "--max-metric": (float, lambda x: True, "a number"),
    "--min-requests": (int, lambda n: n >= 1, "a whole number >= 1"),
}
"""Each numeric option: its conversion, its range and the accepted values in words."""

_OPTION_OF_FIELD = {
    **{field: opt for opt, field in _GUARD_OPTIONS.items()},
    "rate": "--rate",
    "dwell_s": "--dwell",
    "steps": "--steps",
}


def allow_options() -> None:
    """Let ``--json``, ``--rate``, ``--off`` ... reach the ``inference`` command as arguments.

    The command takes free arguments (``ACTION ARGS...``); without this click
    would reject every option of its actions as unknown, and a negative number
    (``predict NAME -1``) as an option. :func:`~faust_inference.cli.register_command`
    calls it as it registers the command, so every app where
    :func:`~faust_inference.install` ran accepts them, with or without a lifecycle.
    """
    try:
        from faust.cli.base import cli
    except ImportError:  # pragma: no cover
        return
    command = cli.commands.get("inference")
    if command is not None:
        command.context_settings["ignore_unknown_options"] = True
        command.allow_extra_args = True
        command.ignore_unknown_options = True


def parse(args: Sequence[str], action: str | None = None) -> tuple[list[str], dict[str, str]]:
    """Split ``args`` into positionals and ``--option value`` / ``--flag`` pairs.

    Args:
        args: the arguments after the action.
        action: when given, an option it does not take (see :data:`ACCEPTED`)
            is a usage error, and so is a value out of the option's range.

    Raises:
        SystemExit: a usage error: one line naming the option and what it
            accepts, then :data:`USAGE`.

    Example:
        >>> parse(["fraud", "v2", "--rate", "0.1", "--off"])
        (['fraud', 'v2'], {'--rate': '0.1', '--off': '1'})
        >>> try:
        ...     parse(["fraud", "v2", "--rate", "abc"], "shadow")
        ... except SystemExit as exc:
        ...     print(str(exc).splitlines()[0])
        shadow: --rate takes a number in (0, 1], the share of events copied; got 'abc'
    """
    positional: list[str] = []
    options: dict[str, str] = {}
    accepted = None if action is None else ACCEPTED.get(action, frozenset())
    it = iter(args)
    for arg in it:
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if accepted is not None and name not in accepted:
                # Before its value is looked for: a typo is named as such.
                takes = ", ".join(sorted(accepted)) or "no options"
                raise SystemExit(
                    f"{action}: unknown option {name}; {action} takes {takes}\n{USAGE}"
                )
            if eq:
                options[name] = value
            elif name in _FLAGS:
                options[name] = "1"
            else:
                nxt = next(it, None)
                if nxt is None:
                    raise SystemExit(f"option {name} needs a value\n{USAGE}")
                options[name] = nxt
        else:
            positional.append(arg)
    if action is not None:
        for name, raw in options.items():
            if name in _NUMBERS:
                _value(action, options, name, raw)
    return positional, options


def _value(action: str, opts: dict[str, str], name: str, default: str) -> Any:
    """The option ``name`` converted (``default`` when not given), or a usage error."""
    convert, ok, accepted = _NUMBERS[name]
    raw = opts.get(name, default)
    try:
        value = convert(raw)
    except ValueError:
        value = None
    if value is None or not _finite(value) or not ok(value):
        raise SystemExit(f"{action}: {name} takes {accepted}; got {raw!r}\n{USAGE}")
    return value


def _invalid(action: str, exc: ValidationError) -> SystemExit:
    """A usage error naming the options behind a ValidationError (never the input)."""
    problems = []
    for err in exc.errors():
        loc = err["loc"]
        field = str(loc[-1]) if loc else ""
        where = _OPTION_OF_FIELD.get(field) or ".".join(map(str, loc)) or "input"
        problems.append(f"{where}: {err['msg']}")
    return SystemExit(f"{action}: {'; '.join(problems)}\n{USAGE}")


async def run_action(command: Any, app: Any, action: str, args: Sequence[str]) -> bool:
    """Run a lifecycle action; False when ``action`` is not one (or the app has no lifecycle).

    Raises:
        SystemExit: a usage error (see :func:`parse`), or the change was
            refused (``ConfigurationError: ...``); the app's models are closed first.
    """
    plane = getattr(app, "inference_lifecycle", None)
    if plane is None or action not in ACTIONS:
        return False
    say = command.say
    client: ControlClient | None = None
    try:
        pos, opts = parse(args, action)  # usage errors before anything is read or written
        client = ControlClient.for_app(app)
        if action == "list":
            if "--json" not in opts:
                from faust_inference.cli import describe

                say(describe(app.inference.models.values()))
                say("")
            reports = [await _report(client, plane, name) for name in app.inference.models]
            say(_json(reports) if "--json" in opts else _routing_table(reports))
        elif action in ("stats", "history"):
            name = _need(pos, 1, action)[0]
            report = await _report(client, plane, name)
            if "--json" in opts:
                say(_json(report if action == "stats" else report["history"]))
            else:
                say(_stats_text(report) if action == "stats" else _history_text(report))
        elif action == "evaluate":
            from faust_inference.lifecycle.offline import evaluate_offline

            name = _need(pos, 1, action)[0]
            for required in ("--version", "--events", "--labels"):
                if required not in opts:
                    raise SystemExit(f"evaluate needs {required}\n{USAGE}")
            metrics = await evaluate_offline(
                app,
                plane,
                name,
                opts["--version"],
                events=opts["--events"],
                labels=opts["--labels"],
                limit=_value(action, opts, "--limit", "100000"),
                label_field=opts.get("--label-field", "label"),
            )
            say(_json(metrics) if "--json" in opts else _metrics_text(metrics))
        else:
            change = await _change(client, plane, action, pos, opts)
            name = pos[0]
            state = await client.change(
                name,
                change,
                versions=plane.model_versions(name).names,
                default=plane.model_versions(name).default,
            )
            say(f"{name}: revision {state.revision}: {change.describe()}")
    except (ConfigurationError, InferenceError) as exc:
        raise SystemExit(f"{type(exc).__name__}: {exc}") from None
    except ValidationError as exc:
        raise _invalid(action, exc) from None
    finally:
        if client is not None:
            await client.aclose()
        await app.inference.aclose()
    return True


async def _report(client: ControlClient, plane: Any, name: str) -> dict[str, Any]:
    from faust_inference.lifecycle.report import model_report

    versions = plane.model_versions(name)
    raw = (await client.read()).get(name)
    state = (
        RoutingState.initial(name, versions.default, versions=versions.names)
        if raw is None
        else RoutingState.model_validate(raw).with_versions(versions.names)
    )
    prefix = f"{name}|"
    stats = await client.read(client.stats_topic)
    published = [v for k, v in stats.items() if k.startswith(prefix)]
    return model_report(name, versions.names, state, published)


async def _change(
    client: ControlClient, plane: Any, action: str, pos: list[str], opts: dict[str, str]
) -> Change:
    common: dict[str, Any] = {"reason": opts.get("--reason"), "source": "cli"}
    if action == "switch":
        _, version = _need(pos, 2, action)
        return Change.switch(version, **common)
    if action == "split":
        if len(pos) < 3:
            raise SystemExit(f"split needs NAME and at least two VERSION=WEIGHT\n{USAGE}")
        weights: dict[str, float] = {}
        for item in pos[1:]:
            version, eq, weight = item.partition("=")
            try:
                weights[version] = float(weight)
            except ValueError:
                eq = ""
            if not eq:
                raise SystemExit(f"split weights look like v1=90, got {item!r}")
        return Change.split(weights, **common)
    if action == "shadow":
        if "--off" in opts:
            _need(pos, 1, action)
            return Change.shadow_off(**common)
        _, version = _need(pos, 2, action)
        # Without --rate every event is copied (documented in USAGE and docs).
        return Change.shadow(version, _value(action, opts, "--rate", "1"), **common)
    name = _need(pos, 1, action)[0]
    versions = plane.model_versions(name)
    raw = (await client.read()).get(name)
    state = (
        RoutingState.initial(name, versions.default, versions=versions.names)
        if raw is None
        else RoutingState.model_validate(raw).with_versions(versions.names)
    )
    if action == "rollout":
        from faust_inference.lifecycle import rollout

        _, version = _need(pos, 2, action)
        guards: dict[str, Any] = {}
        for opt, field in _GUARD_OPTIONS.items():
            if opt in opts:
                guards[field] = opts[opt] if opt == "--metric" else _value(action, opts, opt, "")
        r = rollout.start(
            state,
            version,
            steps=_value(action, opts, "--steps", "1,10,50,100"),
            dwell_s=_value(action, opts, "--dwell", "60"),
            now=time.time(),
            **guards,
        )
        return Change(action="rollout", rollout=r, **common)
    # rollback
    if state.rollout is not None and state.rollout.status == "running":
        final = state.rollout.model_copy(
            update={"status": "rolled_back", "last_decision": "rolled back by hand"}
        )
        return Change(action="rollback", rollout=final, **common)
    previous = [c.version for c in state.history if c.action in ("switch", "promote", "create")]
    if len(previous) >= 2 and previous[-2] is not None:
        return Change.switch(previous[-2], **common)
    raise SystemExit(f"model {name!r}: no rollout running and no earlier default to go back to")


def _need(pos: list[str], n: int, action: str) -> list[str]:
    if len(pos) < n:
        raise SystemExit(f"{action}: missing argument(s)\n{USAGE}")
    return pos[:n]


def _json(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()


def _table(rows: list[tuple[Any, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1000 * x:.0f} ms"


def _routing_table(reports: list[dict[str, Any]]) -> str:
    rows: list[tuple[Any, ...]] = [
        ("model", "version", "traffic", "role", "in flight", "requests", "error rate", "p99")
    ]
    for r in reports:
        for v, f in r["versions"].items():
            role = []
            if f["default"]:
                role.append("default")
            if f["shadow"]:
                role.append(f"shadow {r['shadow']['rate']:g}")
            ro = r["rollout"]
            if ro and ro["version"] == v:
                role.append(f"rollout {ro['status']}")
            rows.append(
                (
                    r["model"],
                    v,
                    f"{f['share_percent']:g}%",
                    ",".join(role) or "-",
                    f["in_flight"],
                    f["requests"],
                    _pct(f["error_rate"]),
                    _ms(f["p99_s"]),
                )
            )
    return _table(rows)


def _stats_text(r: dict[str, Any]) -> str:
    lines = [_routing_table([r])]
    ro = r["rollout"]
    if ro:
        lines.append(
            f"\nrollout of {ro['version']}: {ro['status']}, step {ro['step'] + 1}/"
            f"{len(ro['steps'])} at {ro['percent']:g}%; last decision: {ro['last_decision'] or '-'}"
        )
    sh = r["shadow_stats"]
    for pair, a in sh["agreement"].items():
        value = a["value"]
        shown = "-" if value is None else f"{value:.4g}"
        lines.append(f"\nshadow {pair}: {a['measure']} {shown} over {a['compared']} pairs")
        if a["confusion"]:
            lines.append(
                "  confusion (primary->shadow): "
                + ", ".join(f"{k}: {n}" for k, n in sorted(a["confusion"].items()))
            )
    for what in ("sent", "dropped", "failed"):
        if sh[what]:
            lines.append(
                f"shadow copies {what}: " + ", ".join(f"{v}={n}" for v, n in sh[what].items())
            )
    ev = r["evaluation"]
    for v, m in ev["versions"].items():
        lines.append(f"\nevaluation of {v} (every worker, since start): " + _metrics_text(m))
        for w in ev["windows"].get(v, []):
            start = time.strftime("%H:%M:%S", time.gmtime(w["start"]))
            figures = {k: x for k, x in w.items() if k != "start"}
            lines.append(f"  window {start} UTC +{ev['window_s']:g}s: " + _metrics_text(figures))
    if ev["versions"] or ev["pending"]:
        lines.append(
            f"predictions waiting for a label: {ev['pending']}; expired without one: "
            f"{ev['unmatched']}; labels without a prediction: {ev['unknown_labels']}"
            + (f"; invalid label events: {ev['invalid_labels']}" if ev["invalid_labels"] else "")
        )
    lines.append(f"\nworkers reporting: {r['workers']}")
    return "\n".join(lines)


def _history_text(r: dict[str, Any]) -> str:
    rows: list[tuple[Any, ...]] = [("when (UTC)", "source", "change")]
    for c in r["history"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c["at"]))
        rows.append((when, c["source"], c["what"]))
    return _table(rows)


def _metrics_text(m: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items())
