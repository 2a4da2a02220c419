"""Guarded rollout: move traffic to a new version in steps, or back when a guard breaks.

The decision is a pure function of the rollout's state, the clock and the
figures of the current step (summed over every worker), so that it can be
tested without a broker and so that whichever worker runs the controller
(the Faust leader) reaches the same verdict. Each step lasts at least
``dwell_s``; at its end the canary advances to the next percentage if every
guard holds, and is promoted (made the default) after the last one. A broken
guard rolls it back at once, without waiting for the dwell time: the stable
version takes all the traffic again.

Example:
    >>> r = RolloutState(version="v2", stable="v1", steps=(10, 100), dwell_s=30,
    ...                  step_started_at=0.0)
    >>> healthy = Figures(requests=100, errors=1, events=99)
    >>> decide(r, now=31.0, canary=healthy, stable=Figures()).action
    'advance'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from faust_inference.lifecycle.routing import Change, RolloutState, RoutingState
from faust_inference.lifecycle.stats import Figures

__all__ = ["Decision", "decide", "next_change", "start"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the controller does now, and why in words (logged and recorded).

    Attributes:
        action: ``hold`` (keep the step), ``advance``, ``promote`` or ``rollback``.
        reason: which guard and which figure.
        guard: the guard that broke (rollback) or None.
    """

    action: Literal["hold", "advance", "promote", "rollback"]
    reason: str
    guard: str | None = None


def start(
    state: RoutingState,
    version: str,
    *,
    steps: tuple[float, ...] = (1.0, 10.0, 50.0, 100.0),
    dwell_s: float = 60.0,
    now: float,
    **guards: object,
) -> RolloutState:
    """The first step of a rollout of ``version`` against the current default.

    Raises:
        faust_inference.ConfigurationError: steps not increasing, or outside (0, 100].
    """
    from faust_inference.exceptions import ConfigurationError
    from faust_inference.lifecycle.routing import GuardSettings

    if not steps or any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise ConfigurationError(
            f"rollout steps must increase within (0, 100], e.g. 1,10,50,100; got {steps}"
        )
    if steps[-1] != 100:
        steps = (*steps, 100.0)
    return RolloutState(
        version=version,
        stable=state.default,
        steps=steps,
        dwell_s=dwell_s,
        step_started_at=now,
        guards=GuardSettings.model_validate(guards),
    )


def decide(
    rollout: RolloutState,
    *,
    now: float,
    canary: Figures,
    stable: Figures,
    agreement: float | None = None,
    metric: float | None = None,
) -> Decision:
    """Judge the current step of ``rollout``.

    Args:
        rollout: a running rollout.
        now: Unix time.
        canary: the canary's figures since the step began, over every worker.
        stable: the stable version's figures over the same period.
        agreement: the canary's agreement with the stable version, if compared.
        metric: the canary's value of ``guards.metric``, if evaluated.
    """
    g = rollout.guards
    pct = f"{rollout.percent:g}%"
    n = canary.requests
    # Guards are checked as soon as there are enough requests to judge: a
    # canary failing one call in five is rolled back within its first step.
    if n >= g.min_requests:
        if g.max_error_rate is not None and canary.error_rate > g.max_error_rate:
            return _rollback(
                "error_rate",
                f"error rate {canary.error_rate:.1%} over {n} requests > {g.max_error_rate:.1%}",
                pct,
            )
        p99 = canary.p99_s
        if g.max_p99_s is not None and p99 > g.max_p99_s:
            return _rollback("p99", f"p99 {p99 * 1000:.0f} ms > {g.max_p99_s * 1000:.0f} ms", pct)
        base = stable.p99_s
        if (
            g.max_p99_ratio is not None
            and stable.requests >= g.min_requests
            and not math.isnan(base)
            and p99 > g.max_p99_ratio * base
        ):
            return _rollback(
                "p99_ratio",
                f"p99 {p99 * 1000:.0f} ms > {g.max_p99_ratio:g} x stable's {base * 1000:.0f} ms",
                pct,
            )
        if g.min_agreement is not None and agreement is not None and agreement < g.min_agreement:
            return _rollback("agreement", f"agreement {agreement:.1%} < {g.min_agreement:.1%}", pct)
        if g.metric is not None and metric is not None:
            if g.min_metric is not None and metric < g.min_metric:
                return _rollback("metric", f"{g.metric} {metric:.4g} < {g.min_metric:g}", pct)
            if g.max_metric is not None and metric > g.max_metric:
                return _rollback("metric", f"{g.metric} {metric:.4g} > {g.max_metric:g}", pct)
    waited = now - rollout.step_started_at
    if waited < rollout.dwell_s:
        return Decision("hold", f"at {pct} for {waited:.0f}s of {rollout.dwell_s:g}s")
    if n < g.min_requests:
        return Decision("hold", f"at {pct}: {n} of {g.min_requests} requests needed to judge")
    if (g.min_agreement is not None and agreement is None) or (
        g.metric is not None and metric is None
    ):
        return Decision("hold", f"at {pct}: waiting for agreement or {g.metric} figures")
    figures = f"error rate {canary.error_rate:.1%}, p99 {canary.p99_s * 1000:.0f} ms, {n} requests"
    if rollout.step + 1 >= len(rollout.steps):
        return Decision("promote", f"guards held at {pct} ({figures})")
    nxt = rollout.steps[rollout.step + 1]
    return Decision("advance", f"guards held at {pct} ({figures}); next {nxt:g}%")


def _rollback(guard: str, figure: str, pct: str) -> Decision:
    return Decision("rollback", f"guard {guard} broke at {pct}: {figure}", guard)


def next_change(state: RoutingState, decision: Decision, *, now: float) -> Change | None:
    """The control record that carries out ``decision`` (None for ``hold``)."""
    r = state.rollout
    if r is None or decision.action == "hold":
        return None
    done = r.model_copy(update={"last_decision": decision.reason})
    if decision.action == "advance":
        nxt = done.model_copy(update={"step": r.step + 1, "step_started_at": now})
        return Change(
            action="advance", rollout=nxt, reason=decision.reason, source="rollout", at=now
        )
    if decision.action == "promote":
        final = done.model_copy(update={"status": "promoted"})
        return Change(
            action="promote",
            version=r.version,
            rollout=final,
            reason=decision.reason,
            source="rollout",
            at=now,
        )
    final = done.model_copy(update={"status": "rolled_back"})
    return Change(
        action="rollback", rollout=final, reason=decision.reason, source="rollout", at=now
    )
