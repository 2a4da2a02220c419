"""The guarded rollout's decisions, from figures given by hand."""

import pytest

from faust_inference import ConfigurationError
from faust_inference.lifecycle import Change, RoutingState
from faust_inference.lifecycle.rollout import decide, next_change, start
from faust_inference.lifecycle.stats import Figures


def figures(n, errors=0, latency=0.01):
    f = Figures()
    for i in range(n):
        f.record(latency, error=i < errors)
    return f


@pytest.fixture
def state():
    return RoutingState.initial("fraud", "v1", versions=("v1", "v2"))


def test_a_canary_failing_one_call_in_five_is_rolled_back_naming_guard_and_figure(state):
    r = start(state, "v2", steps=(10, 100), dwell_s=30, now=0.0, max_error_rate=0.05)
    d = decide(r, now=5.0, canary=figures(100, errors=20), stable=figures(900))
    assert d.action == "rollback" and d.guard == "error_rate"
    assert "error rate 20.0% over 100 requests > 5.0%" in d.reason
    change = next_change(state.apply(Change(action="rollout", rollout=r)), d, now=5.0)
    after = state.apply(Change(action="rollout", rollout=r)).apply(change)
    assert after.default == "v1" and after.arms() == [("v1", 100.0)]
    assert after.rollout.status == "rolled_back" and "error_rate" in after.rollout.last_decision


def test_a_healthy_canary_advances_after_its_dwell_and_is_promoted_after_the_last_step(state):
    r = start(state, "v2", steps=(10, 50), dwell_s=30, now=0.0)
    assert r.steps == (10, 50, 100)
    s = state.apply(Change(action="rollout", rollout=r))
    assert decide(r, now=10.0, canary=figures(100), stable=figures(900)).action == "hold"
    for expected in ("advance", "advance", "promote"):
        r = s.rollout
        d = decide(r, now=r.step_started_at + 31, canary=figures(100), stable=figures(900))
        assert d.action == expected
        s = s.apply(next_change(s, d, now=r.step_started_at + 31))
    assert s.default == "v2" and s.rollout.status == "promoted" and s.arms() == [("v2", 100.0)]
    assert [c.action for c in s.history] == ["rollout", "advance", "advance", "promote"]


def test_too_few_requests_hold_the_step(state):
    r = start(state, "v2", dwell_s=0, now=0.0, min_requests=50)
    d = decide(r, now=100.0, canary=figures(10, errors=10), stable=figures(10))
    assert d.action == "hold" and "10 of 50 requests" in d.reason


def test_latency_guards(state):
    r = start(state, "v2", now=0.0, max_p99_s=0.1, max_error_rate=None)
    d = decide(r, now=1.0, canary=figures(100, latency=0.3), stable=figures(100))
    assert d.guard == "p99" and "p99 3" in d.reason
    r = start(state, "v2", now=0.0, max_p99_ratio=2.0)
    d = decide(r, now=1.0, canary=figures(100, latency=0.05), stable=figures(100, latency=0.01))
    assert d.guard == "p99_ratio"


def test_agreement_and_metric_guards(state):
    r = start(state, "v2", now=0.0, min_agreement=0.9)
    assert decide(r, now=1, canary=figures(60), stable=figures(60), agreement=0.5).guard == (
        "agreement"
    )
    r = start(state, "v2", now=0.0, metric="f1", min_metric=0.8)
    d = decide(r, now=1, canary=figures(60), stable=figures(60), metric=0.7)
    assert d.guard == "metric" and "f1 0.7 < 0.8" in d.reason
    waiting = decide(r, now=1e9, canary=figures(60), stable=figures(60), metric=None)
    assert waiting.action == "hold"


def test_steps_must_increase(state):
    with pytest.raises(ConfigurationError, match="rollout steps must increase"):
        start(state, "v2", steps=(50, 10), now=0.0)


def test_rolling_out_the_default_is_refused(state):
    r = start(state, "v1", now=0.0)
    with pytest.raises(ConfigurationError, match="already the default"):
        state.apply(Change(action="rollout", rollout=r))
