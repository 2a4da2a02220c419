"""``/inference/`` on the worker's web server: the models' lifecycle as JSON, POST and a page.

:func:`setup` registers one Faust :class:`~faust.web.Blueprint`:

=======  ==========================================  =====================================
method   path                                        what
=======  ==========================================  =====================================
GET      ``/inference/``                             an HTML page a person can read
GET      ``/inference/models/``                      every model's report (JSON)
GET      ``/inference/models/{name}/``               one model's report (JSON)
POST     ``/inference/models/{name}/switch/``        ``{"version": "v2", "reason": "..."}``
POST     ``/inference/models/{name}/split/``         ``{"weights": {"v1": 90, "v2": 10}}``
POST     ``/inference/models/{name}/shadow/``        ``{"version": "v2", "rate": 0.1}`` or
                                                     ``{"off": true}``
POST     ``/inference/models/{name}/rollout/``       ``{"version": "v2", "steps": [1, 10, 100],
                                                     "dwell_s": 60, "max_error_rate": 0.02}``
POST     ``/inference/models/{name}/rollback/``      ``{"reason": "..."}``
=======  ==========================================  =====================================

A report is what ``faust inference stats --json`` prints (the same builder,
:func:`~faust_inference.lifecycle.report.model_report`). Reading is open;
changes are refused (403) unless the app configured a token, and then need
``Authorization: Bearer <token>``. **Faust's web server binds to all
interfaces by default** (``web_bind="0.0.0.0"``): set ``web_bind="127.0.0.1"``
or put the worker behind a proxy if the page must not be reachable from
other machines, and keep the token secret (it is never logged or shown).

Example::

    install(app)
    fraud = app.model("fraud", ...).add_version("v2", endpoint="http://b:8080")
    faust_inference.web.setup(app, token=os.environ["INFERENCE_WEB_TOKEN"])
"""

from __future__ import annotations

import hmac
import html
import os
import time
from typing import Any

from pydantic import SecretStr

from faust_inference.exceptions import ConfigurationError, InferenceError

__all__ = ["TOKEN_ENV", "refusal", "render_page", "setup"]

TOKEN_ENV = "FAUST_INFERENCE_WEB_TOKEN"
"""Environment variable read for the token when ``setup(app)`` is given none."""


def setup(app: Any, *, token: str | SecretStr | None = None, prefix: str = "/inference/") -> None:
    """Serve the lifecycle views under ``prefix`` on ``app``'s web server (call at import).

    Args:
        app: a Faust app after :func:`~faust_inference.install`.
        token: the bearer token that POST requests must carry; None reads
            :data:`TOKEN_ENV`; without either, every change is refused.
        prefix: where the views live.
    """
    from faust_inference.lifecycle.plane import lifecycle

    plane = lifecycle(app)
    if token is None and os.environ.get(TOKEN_ENV):
        token = os.environ[TOKEN_ENV]
    if isinstance(token, str):
        if len(token) < 16:
            raise ConfigurationError(
                "the inference web token must be at least 16 characters; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe())'"
            )
        token = SecretStr(token)
    plane.web_token = token
    _blueprint().register(app, url_prefix=prefix)


def _blueprint() -> Any:
    from faust import web

    blueprint = web.Blueprint("inference")

    class _Base(web.View):
        def plane(self) -> Any:
            return getattr(self.app, "inference_lifecycle", None)

        def models(self) -> Any:
            return getattr(self.app, "inference")  # noqa: B009 (not on Faust's AppT)

        def report(self, name: str) -> dict[str, Any]:
            from faust_inference.lifecycle.report import model_report

            plane = self.plane()
            versions = plane.model_versions(name).names
            return model_report(name, versions, plane.state(name), plane.figures(name))

        def reports(self) -> list[dict[str, Any]]:
            return [self.report(n) for n in self.models().models]

    @blueprint.route("/", name="page")
    class Page(_Base):
        async def get(self, request: Any) -> Any:
            token = self.plane().web_token is not None
            return self.html(render_page(self.reports(), changes_allowed=token))

    @blueprint.route("/models/", name="models")
    class Models(_Base):
        async def get(self, request: Any) -> Any:
            return self.json(self.reports())

    @blueprint.route("/models/{name}/", name="model")
    class Model(_Base):
        async def get(self, request: Any, name: str) -> Any:
            if name not in self.models():
                return self.json({"error": f"no model named {name!r}"}, status=404)
            return self.json(self.report(name))

    @blueprint.route("/models/{name}/{action}/", name="change")
    class ModelChange(_Base):
        async def post(self, request: Any, name: str, action: str) -> Any:
            plane = self.plane()
            refused = refusal(plane.web_token, request.headers.get("Authorization", ""))
            if refused is not None:
                return self.json({"error": refused[1]}, status=refused[0])
            if name not in self.models():
                return self.json({"error": f"no model named {name!r}"}, status=404)
            try:
                body = await request.json()
            except ValueError:
                return self.json({"error": "the body must be a JSON object"}, status=400)
            try:
                change = await _change(plane, name, action, body if isinstance(body, dict) else {})
                state = await plane.change(name, change)
            except (ConfigurationError, InferenceError, ValueError, TypeError) as exc:
                return self.json({"error": str(exc)}, status=400)
            plane.refresh()
            return self.json({"revision": state.revision, "change": change.describe()})

    return blueprint


def refusal(token: SecretStr | None, authorization: str) -> tuple[int, str] | None:
    """Why a change is refused (status, message), or None when it may go ahead.

    Example:
        >>> refusal(None, "Bearer x")[0], refusal(SecretStr("s" * 16), "Bearer " + "s" * 16)
        (403, None)
    """
    if token is None:
        return 403, (
            "changes over the web are off: configure a token with "
            f"faust_inference.web.setup(app, token=...) or {TOKEN_ENV}"
        )
    wanted = f"Bearer {token.get_secret_value()}"
    if not hmac.compare_digest(authorization.encode(), wanted.encode()):
        return 401, "missing or wrong bearer token"
    return None


async def _change(plane: Any, name: str, action: str, body: dict[str, Any]) -> Any:
    from faust_inference.lifecycle import rollout
    from faust_inference.lifecycle.routing import Change

    common: dict[str, Any] = {"reason": body.get("reason"), "source": "web"}
    if action == "switch":
        return Change.switch(str(body["version"]), **common)
    if action == "split":
        return Change.split({str(k): float(v) for k, v in dict(body["weights"]).items()}, **common)
    if action == "shadow":
        if body.get("off"):
            return Change.shadow_off(**common)
        return Change.shadow(str(body["version"]), float(body.get("rate", 1.0)), **common)
    state = plane.state(name)
    if action == "rollout":
        guards = {
            k: body[k]
            for k in (
                "max_error_rate",
                "max_p99_s",
                "max_p99_ratio",
                "min_agreement",
                "metric",
                "min_metric",
                "max_metric",
                "min_requests",
            )
            if k in body
        }
        r = rollout.start(
            state,
            str(body["version"]),
            steps=tuple(float(s) for s in body.get("steps", (1, 10, 50, 100))),
            dwell_s=float(body.get("dwell_s", 60)),
            now=time.time(),
            **guards,
        )
        return Change(action="rollout", rollout=r, **common)
    if action == "rollback":
        if state.rollout is None or state.rollout.status != "running":
            raise ConfigurationError(f"model {name!r} has no rollout running")
        final = state.rollout.model_copy(
            update={"status": "rolled_back", "last_decision": "rolled back over the web"}
        )
        return Change(action="rollback", rollout=final, **common)
    raise ConfigurationError(
        f"unknown action {action!r}: use switch, split, shadow, rollout or rollback"
    )


def _fmt(x: Any, unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}{unit}"
    return f"{x}{unit}"


def render_page(reports: list[dict[str, Any]], *, changes_allowed: bool) -> str:
    """The HTML page: models, versions, weights, live rates, agreement, evaluation, changes."""
    e = html.escape
    parts: list[str] = []
    for r in reports:
        rows = []
        for v, f in r["versions"].items():
            role = ["default"] if f["default"] else []
            if f["shadow"]:
                role.append(f"shadow ({r['shadow']['rate']:g})")
            rows.append(
                "<tr>"
                f"<td>{e(v)}</td><td>{e(', '.join(role) or '-')}</td>"
                f"<td class=n>{f['share_percent']:.4g}%</td>"
                f"<td class=n>{f['rate_per_s']:.1f}</td><td class=n>{f['in_flight']}</td>"
                f"<td class=n>{f['requests']}</td><td class=n>{100 * f['error_rate']:.2f}%</td>"
                f"<td class=n>{_fmt(None if f['p99_s'] is None else 1000 * f['p99_s'], ' ms')}</td>"
                "</tr>"
            )
        ro = r["rollout"]
        rollout = (
            f"<p class=rollout>Rollout of <b>{e(ro['version'])}</b>: {e(ro['status'])}, "
            f"step {ro['step'] + 1} of {len(ro['steps'])} at {ro['percent']:g}% &mdash; "
            f"{e(ro['last_decision'] or 'waiting for the first decision')}</p>"
            if ro
            else ""
        )
        agreement = "".join(
            f"<li>{e(pair)}: {e(a['measure'])} <b>{_fmt(a['value'])}</b> over {a['compared']} "
            f"pairs{_confusion(a)}</li>"
            for pair, a in r["shadow_stats"]["agreement"].items()
        )
        counts = ", ".join(
            f"{what} {sum(r['shadow_stats'][what].values())}"
            for what in ("sent", "dropped", "failed")
            if r["shadow_stats"][what]
        )
        evaluation = _evaluation(r["evaluation"])
        history = "".join(
            f"<tr><td>{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(c['at']))}</td>"
            f"<td>{e(c['source'])}</td><td>{e(c['what'])}</td></tr>"
            for c in r["history"][:15]
        )
        parts.append(
            f"<section><h2>{e(r['model'])} <small>default {e(r['default'])}, revision "
            f"{r['revision']}, {r['workers']} worker(s) reporting</small></h2>"
            "<table><tr><th>version</th><th>role</th><th>traffic</th><th>req/s</th>"
            "<th>in flight</th><th>requests</th><th>errors</th><th>p99</th></tr>"
            + "".join(rows)
            + "</table>"
            + rollout
            + "<h3>Shadow agreement</h3>"
            + (f"<ul>{agreement}</ul>" if agreement else "<p>No shadow comparisons.</p>")
            + (f"<p>Shadow copies: {e(counts)}</p>" if counts else "")
            + "<h3>Evaluation against labels</h3>"
            + (evaluation or "<p>No labelled predictions.</p>")
            + "<h3>Recent changes</h3>"
            + (
                f"<table><tr><th>when (UTC)</th><th>from</th><th>change</th></tr>{history}</table>"
                if history
                else "<p>No changes yet: every event goes to the default version.</p>"
            )
            + "</section>"
        )
    note = (
        "Changes: POST to /inference/models/NAME/ACTION/ with the bearer token."
        if changes_allowed
        else "Read only: this app configured no token, so changes over the web are refused."
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta http-equiv=refresh content=5><title>faust-inference: models</title>"
        f"<style>{_CSS}</style></head><body><h1>Models</h1>"
        f"<p class=note>{e(note)} Refreshes every 5 s.</p>"
        + ("".join(parts) or "<p>No models registered.</p>")
        + "</body></html>"
    )


_EVAL_COLUMNS = ("n", "accuracy", "precision", "recall", "f1", "log_loss", "mae", "rmse")


def _evaluation(ev: dict[str, Any]) -> str:
    """Per version: the figures since start, then each window's, over every worker."""
    e = html.escape
    if not ev["versions"]:
        return ""
    shown = [c for c in _EVAL_COLUMNS if any(c in m for m in ev["versions"].values())]
    head = "".join(f"<th>{c}</th>" for c in shown)
    rows = []
    for v, m in ev["versions"].items():
        cells = "".join(f"<td class=n>{_fmt(m.get(c))}</td>" for c in shown)
        rows.append(f"<tr><td>{e(v)}</td><td>since start</td>{cells}</tr>")
        for w in ev["windows"].get(v, []):
            when = time.strftime("%H:%M:%S", time.gmtime(w["start"]))
            cells = "".join(f"<td class=n>{_fmt(w.get(c))}</td>" for c in shown)
            rows.append(f"<tr class=muted><td>{e(v)}</td><td>{when} UTC</td>{cells}</tr>")
    window = f"{ev['window_s']:g} s windows" if ev.get("window_s") else "windows"
    return (
        f"<table class=evaluation><tr><th>version</th><th>{e(window)}</th>{head}</tr>"
        + "".join(rows)
        + "</table>"
        + f"<p class=muted>Over every worker. Waiting for a label: {ev['pending']}; expired "
        f"without one: {ev['unmatched']}; labels without a prediction: "
        f"{ev['unknown_labels']}; invalid label events: {ev['invalid_labels']}.</p>"
    )


def _confusion(a: dict[str, Any]) -> str:
    if not a["confusion"]:
        return ""
    cells = ", ".join(f"{html.escape(k)}: {n}" for k, n in sorted(a["confusion"].items()))
    return f" <span class=muted>(primary&rarr;shadow {cells})</span>"


_CSS = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}"
    "h2 small{font-weight:normal;color:#666;font-size:13px}"
    "table{border-collapse:collapse;margin:8px 0}td,th{padding:4px 10px;"
    "border-bottom:1px solid #ddd;text-align:left}td.n{text-align:right;"
    "font-variant-numeric:tabular-nums}th{background:#f4f4f4}"
    "section{border:1px solid #ccc;border-radius:6px;padding:8px 16px;margin:16px 0}"
    ".rollout{background:#fff7e0;padding:6px}.muted{color:#777}.note{color:#555}"
)
