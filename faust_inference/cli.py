"""The ``faust inference`` command: look at and try the models of an app.

Registered by :func:`~faust_inference.install`, so it appears in
``faust -A myapp --help`` next to Faust's own commands::

    faust -A myapp inference list
    faust -A myapp inference predict fraud '[0.1, 0.2, 0.3]'

``predict`` calls the model once, with its registered limits, retries and
fallback, which is the quickest way to check an endpoint and its credentials
before starting a worker. (Faust already has ``faust models`` for records.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from faust_inference.exceptions import InferenceError
from faust_inference.providers.redaction import redact_url, scrub, secrets_of

if TYPE_CHECKING:
    from faust.types import AppT

    from faust_inference.app import ModelRegistry

__all__ = ["register_command"]


def register_command(app: AppT, registry: ModelRegistry) -> Any:
    """Add the ``inference`` command, for ``registry``'s models, to ``app``'s command line."""
    from faust.cli import argument

    @app.command(
        argument("action", type=str, required=True),
        argument("args", nargs=-1, type=str),
        name="inference",
    )
    async def inference(self: Any, action: str, args: tuple[str, ...]) -> None:
        """Inspect and try registered models: 'list', or 'predict NAME JSON'."""
        from faust_inference.lifecycle.cli import run_action

        if await run_action(self, app, action, args):  # switch, split, shadow, rollout ...
            return
        if action == "list":
            self.say(describe(registry.models.values()))
        elif action == "predict" and len(args) == 2:
            name, raw = args
            model = registry[name]
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise SystemExit(f"the input must be JSON ({exc}): {raw!r}") from None
            try:
                output = await model.predict(value)
            except InferenceError as exc:
                secrets = secrets_of(model.runner.provider)
                raise SystemExit(f"{type(exc).__name__}: {scrub(str(exc), secrets)}") from None
            finally:
                await registry.aclose()
            self.say(orjson.dumps(output, option=orjson.OPT_INDENT_2).decode())
        else:
            raise SystemExit("usage: faust -A APP inference list | predict NAME JSON")

    return inference


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
