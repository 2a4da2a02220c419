"""What the commands and the web page show about a model: one builder for both.

A report is plain JSON-ready data built from a model's routing state and
the figures every worker published, so that ``faust inference list``,
``faust inference stats``, ``GET /inference/models`` and the HTML page never
disagree.

Example::

    report = model_report("fraud", ("v1", "v2"), state, published)
    report["versions"]["v2"]["error_rate"]
"""

from __future__ import annotations

import math
import time
from typing import Any

from faust_inference.lifecycle.evaluation import merged_evaluation
from faust_inference.lifecycle.routing import RoutingState
from faust_inference.lifecycle.shadow import Agreement
from faust_inference.lifecycle.stats import Figures

__all__ = ["LIVE_S", "model_report"]

LIVE_S = 30.0
"""Published figures older than this many seconds belong to a stopped worker."""


def _num(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else x


def model_report(
    model: str,
    versions: tuple[str, ...],
    state: RoutingState,
    published: list[dict[str, Any]],
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """Routing, per-version figures (summed over workers), shadow and evaluation of ``model``."""
    now = time.time() if now is None else now
    live = [s for s in published if now - float(s.get("at", 0)) < LIVE_S]
    shares = dict(state.arms())
    per_version: dict[str, Any] = {}
    for v in versions:
        total = Figures()
        in_flight = 0
        for snap in published:
            if v in snap.get("total", {}):
                total = total.merge(Figures.from_dict(snap["total"][v]))
        for snap in live:
            in_flight += int(snap.get("in_flight", {}).get(v, 0))
        per_version[v] = {
            "share_percent": shares.get(v, 0.0),
            "default": v == state.default,
            "shadow": v == state.shadow,
            "requests": total.requests,
            "errors": total.errors,
            "error_rate": total.error_rate,
            "p99_s": _num(total.p99_s),
            "in_flight": in_flight,
            "rate_per_s": sum(float(s.get("rate", {}).get(v, 0.0)) for s in live),
        }
    agreement: dict[str, Agreement] = {}
    shadow_counts: dict[str, dict[str, int]] = {"sent": {}, "dropped": {}, "failed": {}}
    for snap in published:
        sh = snap.get("shadow") or {}
        for pair, data in sh.get("agreement", {}).items():
            a = Agreement.from_dict(data)
            agreement[pair] = agreement[pair].merge(a) if pair in agreement else a
        for what in shadow_counts:
            for v, n in sh.get(what, {}).items():
                shadow_counts[what][v] = shadow_counts[what].get(v, 0) + int(n)
    rollout = state.rollout.model_dump(mode="json") if state.rollout is not None else None
    if rollout is not None and state.rollout is not None:
        r = state.rollout
        # The canary's share now: its step's while running, 100% once promoted.
        rollout["percent"] = 0.0 if r.status == "rolled_back" else r.steps[r.step]
    return {
        "model": model,
        "default": state.default,
        "revision": state.revision,
        "changed_at": state.changed_at or None,
        "split": {v: w for v, w in state.arms()} if len(state.arms()) > 1 else {},
        "shadow": {"version": state.shadow, "rate": state.shadow_rate} if state.shadow else None,
        "rollout": rollout,
        "versions": per_version,
        "shadow_stats": {
            **shadow_counts,
            "agreement": {p: a.as_dict() for p, a in agreement.items()},
        },
        "evaluation": merged_evaluation(published, live=live).report(),
        "workers": len(live),
        "history": [
            {
                **c.model_dump(mode="json", include={"at", "action", "reason", "source"}),
                "what": c.describe(),
            }
            for c in reversed(state.history)
        ],
    }
