"""``faust -A app inference ...``: the lifecycle commands, against a running app.

Each command that changes something writes one control record (see
:mod:`~faust_inference.lifecycle.control`); every running worker applies it
within a second. No worker needs to run in the shell that issues it::

    faust -A myapp inference list
    faust -A myapp inference switch fraud v2 --reason "v2 passed review"
    faust -A myapp inference split fraud v1=90 v2=10
    faust -A myapp inference shadow fraud v2 --rate 0.1
    faust -A myapp inference shadow fraud --off
    faust -A myapp inference rollout fraud v2 --steps 1,10,50,100 --dwell 60 --max-error-rate 0.02
    faust -A myapp inference rollback fraud
    faust -A myapp inference stats fraud
    faust -A myapp inference history fraud
    faust -A myapp inference evaluate fraud --version v2 --events scored --labels labels

Add ``--json`` to ``list``, ``stats`` and ``history`` for machine-readable output.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from faust_inference.exceptions import ConfigurationError, InferenceError
from faust_inference.lifecycle.control import ControlClient
from faust_inference.lifecycle.routing import Change, RoutingState

__all__ = ["ACTIONS", "allow_options", "parse", "run_action"]

ACTIONS = frozenset(
    {"list", "switch", "split", "shadow", "rollout", "rollback", "stats", "history", "evaluate"}
)

USAGE = """usage: faust -A APP inference ACTION ...
  list [--json]                         versions, routing, in flight, error rates
  switch NAME VERSION [--reason TEXT]   send all traffic to VERSION
  split NAME V1=90 V2=10 [--reason T]   sticky split by event key
  shadow NAME VERSION [--rate 0.1]      copy a sample of traffic to VERSION
  shadow NAME --off                     stop shadow traffic
  rollout NAME VERSION [--steps 1,10,50,100] [--dwell 60] [--max-error-rate 0.05]
          [--max-p99 SECONDS] [--max-p99-ratio R] [--min-agreement A]
          [--metric NAME --min-metric X | --max-metric X] [--min-requests N]
  rollback NAME [--reason TEXT]         end a rollout, or switch back to the previous default
  stats NAME [--json]                   figures per version over every worker
  history NAME [--json]                 the audit trail of routing changes
  evaluate NAME --version V --events TOPIC --labels TOPIC [--limit N] [--label-field F]"""

_FLAGS = frozenset({"--off", "--json"})


def allow_options() -> None:
    """Let ``--rate``, ``--off`` ... reach the ``inference`` command as arguments.

    The command takes free arguments; without this click would reject the
    options of the lifecycle actions as unknown.
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


def parse(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``args`` into positionals and ``--option value`` / ``--flag`` pairs.

    Example:
        >>> parse(["fraud", "v2", "--rate", "0.1", "--off"])
        (['fraud', 'v2'], {'--rate': '0.1', '--off': '1'})
    """
    positional: list[str] = []
    options: dict[str, str] = {}
    it = iter(args)
    for arg in it:
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
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
    return positional, options


async def run_action(command: Any, app: Any, action: str, args: Sequence[str]) -> bool:
    """Run a lifecycle action; False when ``action`` is not one (or the app has no lifecycle)."""
    plane = getattr(app, "inference_lifecycle", None)
    if plane is None or action not in ACTIONS:
        return False
    say = command.say
    pos, opts = parse(args)
    client = ControlClient.for_app(app)
    try:
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
                limit=int(opts.get("--limit", "100000")),
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
    finally:
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
        return Change.shadow(version, float(opts.get("--rate", "1")), **common)
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
        for opt, field, conv in _GUARD_OPTIONS:
            if opt in opts:
                guards[field] = conv(opts[opt])
        steps = tuple(float(s) for s in opts.get("--steps", "1,10,50,100").split(","))
        r = rollout.start(
            state,
            version,
            steps=steps,
            dwell_s=float(opts.get("--dwell", "60")),
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


_GUARD_OPTIONS: tuple[tuple[str, str, Any], ...] = (
    ("--max-error-rate", "max_error_rate", float),
    ("--max-p99", "max_p99_s", float),
    ("--max-p99-ratio", "max_p99_ratio", float),
    ("--min-agreement", "min_agreement", float),
    ("--metric", "metric", str),
    ("--min-metric", "min_metric", float),
    ("--max-metric", "max_metric", float),
    ("--min-requests", "min_requests", int),
)


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
