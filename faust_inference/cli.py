"""The ``faust inference`` command: look at and try the models of an app.

Registered by :func:`~faust_inference.install`, so it appears in
``faust -A myapp --help`` next to Faust's own commands::

    faust -A myapp inference list
    faust -A myapp inference list --json
    faust -A myapp inference predict fraud '[0.1, 0.2, 0.3]'

``predict`` calls the model once, with its registered limits, retries and
fallback, which is the quickest way to check an endpoint and its credentials
before starting a worker. (Faust already has ``faust models`` for records.)
The routing actions (``switch``, ``shadow``, ``rollout`` ...) need the app's
lifecycle; see :mod:`faust_inference.lifecycle.cli`. Bad input (an unknown
model, action or option, a value out of range) is a usage error: exit status
1, the problem in one line and the usage text, no traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from faust_inference.exceptions import InferenceError, ModelNotFound
from faust_inference.providers.redaction import redact_url, scrub, secrets_of

if TYPE_CHECKING:
    from faust.types import AppT

    from faust_inference.app import ModelRegistry

__all__ = ["describe", "model_rows", "register_command"]

_SUMMARY = """Inspect, try and route the app's models: ACTION [ARGS] [OPTIONS] as below.

The routing actions (switch, split, shadow, rollout, rollback, stats, history,
evaluate) need the app's lifecycle: faust_inference.lifecycle.lifecycle(app), or a
model.add_version() in the app's module. A usage error exits with status 1."""


def help_text() -> str:
    """The ``inference`` command's ``--help``: a summary, then every action (the usage text)."""
    from faust_inference.lifecycle.cli import USAGE

    # "\b" keeps click from rewrapping the table of actions.
    return _SUMMARY + "\n\n\b\n" + "\n".join(USAGE.splitlines()[1:])


def register_command(app: AppT, registry: ModelRegistry) -> Any:
    """Add the ``inference`` command, for ``registry``'s models, to ``app``'s command line.

    Its options (``--json``, ``--rate`` ...) reach the actions on every app,
    with or without a lifecycle: click is told to pass them through
    (:func:`~faust_inference.lifecycle.cli.allow_options`) as the command is
    registered.
    """
    from faust.cli import argument

    from faust_inference.lifecycle.cli import ACTIONS, USAGE, allow_options

    async def inference(self: Any, action: str, args: tuple[str, ...]) -> None:
        from faust_inference.lifecycle.cli import run_action

        if await run_action(self, app, action, args):  # switch, split, shadow, rollout ...
            return
        try:
            if action == "list":
                _list(self, registry, args)
            elif action == "predict":
                await _predict(self, registry, args)
            elif action in ACTIONS:
                raise SystemExit(
                    f"{action} needs the app's lifecycle: call "
                    "faust_inference.lifecycle.lifecycle(app), or add a version with "
                    f"model.add_version(), in the app's module\n{USAGE}"
                )
            else:
                raise SystemExit(f"unknown action {action!r}\n{USAGE}")
        finally:
            await registry.aclose()

    inference.__doc__ = help_text()
    command = app.command(
        argument("action", type=str, required=True),
        argument("args", nargs=-1, type=str),
        name="inference",
    )(inference)
    allow_options()
    return command


def _list(command: Any, registry: ModelRegistry, args: tuple[str, ...]) -> None:
    """``list [--json]`` on an app without a lifecycle: the models and their settings."""
    from faust_inference.lifecycle.cli import USAGE, parse

    positional, opts = parse(args, "list")
    if positional:
        raise SystemExit(f"list takes no arguments, got {' '.join(positional)!r}\n{USAGE}")
    models = registry.models.values()
    if "--json" in opts:
        command.say(orjson.dumps(model_rows(models), option=orjson.OPT_INDENT_2).decode())
    else:
        command.say(describe(models))


async def _predict(command: Any, registry: ModelRegistry, args: tuple[str, ...]) -> None:
    """``predict NAME JSON``: one call, with the model's limits, retries and fallback."""
    from faust_inference.lifecycle.cli import USAGE

    if len(args) != 2:
        raise SystemExit(
            f"predict takes NAME and one JSON input, got {len(args)} argument(s)\n{USAGE}"
        )
    name, raw = args
    try:
        model = registry[name]
    except ModelNotFound as exc:  # the message lists the registered models
        raise SystemExit(f"{type(exc).__name__}: {exc}\n{USAGE}") from None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SystemExit(f"the input must be JSON ({exc}): {raw!r}") from None
    try:
        output = await model.predict(value)
    except InferenceError as exc:
        secrets = secrets_of(model.runner.provider)
        raise SystemExit(f"{type(exc).__name__}: {scrub(str(exc), secrets)}") from None
    command.say(orjson.dumps(output, option=orjson.OPT_INDENT_2).decode())


def model_rows(models: Any) -> list[dict[str, Any]]:
    """One dict per registered model, for ``list --json``; never shows credentials.

    URLs lose their userinfo and query string, and every string is scrubbed of
    the secrets the model's provider uses, as in :func:`describe`.

    Example:
        >>> from faust_inference import ModelRegistry
        >>> r = ModelRegistry()
        >>> _ = r.register("fraud", provider="kserve", endpoint="http://127.0.0.1:8080")
        >>> model_rows(r.models.values())[0]["endpoint"]
        'http://127.0.0.1:8080'
    """
    rows = []
    for m in models:
        s = m.settings
        secrets = secrets_of(m.runner.provider)

        def clean(text: str | None, secrets: tuple[str, ...] = secrets) -> str | None:
            return None if text is None else scrub(text, secrets)

        rows.append(
            {
                "name": s.name,
                "provider": clean(s.provider),
                "endpoint": clean(redact_url(s.endpoint)) if s.endpoint else None,
                "replicas": [clean(redact_url(u)) for u in s.endpoints],
                "remote_name": clean(s.target),
                "version": clean(s.version),
                "task": s.task,
                "max_concurrency": s.max_concurrency,
                "batch_size": s.batch_size,
                "timeout": s.timeout,
            }
        )
    return rows


def describe(models: Any) -> str:
    """A table of registered models; never shows credentials.

    Endpoints lose their userinfo and query string (:func:`redact_url`), and
    every cell is scrubbed of the secrets the model's provider uses.
    """
    models = list(models)
    rows: list[tuple[str, ...]] = [
        ("name", "provider", "endpoint", "remote name", "version", "task", "limits")
    ]
    for m in models:
        s = m.settings
        limits = f"{s.max_concurrency} in flight, batch {s.batch_size}, timeout {s.timeout:g}s"
        rows.append(
            (
                s.name,
                s.provider,
                redact_url(s.endpoint) if s.endpoint else "(default)",
                s.target,
                s.version or "-",
                s.task,
                limits,
            )
        )
    secrets = [secrets_of(m.runner.provider) for m in models]
    rows[1:] = [
        tuple(scrub(str(cell), found) for cell in row)
        for row, found in zip(rows[1:], secrets, strict=True)
    ]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
