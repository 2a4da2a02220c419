"""Routing state and sticky assignment: pure, so exact."""

import pytest

from faust_inference import ConfigurationError
from faust_inference.lifecycle import Change, RoutingState, key_bytes
from faust_inference.lifecycle.rollout import start
from faust_inference.lifecycle.routing import HISTORY, Assigner, bucket

KEYS = [f"customer-{i}".encode() for i in range(10_000)]


def split_state(weights):
    s = RoutingState.initial("fraud", "v1", versions=("v1", "v2", "v3"))
    return s.apply(Change.split(weights))


def test_a_90_10_split_lands_within_two_percent_over_10000_keys():
    a = Assigner(split_state({"v1": 90, "v2": 10}))
    share = sum(a.assign(k)[0] == "v2" for k in KEYS) / len(KEYS)
    assert 0.08 <= share <= 0.12


def test_the_same_key_gets_the_same_arm_from_a_new_state_object():
    # A restart or another worker rebuilds the state from the topic's JSON.
    s = split_state({"v1": 50, "v2": 50})
    again = RoutingState.model_validate_json(s.model_dump_json())
    first, second = Assigner(s), Assigner(again)
    assert [first.assign(k) for k in KEYS[:500]] == [second.assign(k) for k in KEYS[:500]]


def test_models_split_the_same_keys_independently():
    a, b = bucket("fraud", b"k1"), bucket("churn", b"k1")
    assert a != b
    same = sum((bucket("fraud", k) < 0.5) == (bucket("churn", k) < 0.5) for k in KEYS)
    assert 0.45 < same / len(KEYS) < 0.55


def test_a_growing_canary_keeps_every_key_it_had():
    s = RoutingState.initial("fraud", "v1", versions=("v1", "v2"))
    canary_sets = []
    for pct in (1, 10, 50):
        r = start(s, "v2", steps=(pct, 100), now=0.0)
        a = Assigner(s.apply(Change(action="rollout", rollout=r)))
        canary_sets.append({k for k in KEYS if a.assign(k) == ("v2", "canary")})
    assert canary_sets[0] <= canary_sets[1] <= canary_sets[2]
    assert 0.4 < len(canary_sets[2]) / len(KEYS) < 0.6


def test_variants_name_the_arm():
    s = RoutingState.initial("fraud", "v1", versions=("v1", "v2"))
    assert Assigner(s).assign(b"x") == ("v1", "default")
    split = Assigner(s.apply(Change.split({"v1": 50, "v2": 50})))
    variants = {split.assign(k) for k in KEYS[:200]}
    assert variants == {("v1", "control"), ("v2", "treatment")}


def test_events_without_a_key_go_to_the_default_version():
    a = Assigner(split_state({"v1": 1, "v2": 99}))
    assert a.assign(None) == ("v1", "control")


def test_string_and_bytes_keys_hash_alike():
    assert key_bytes("abc") == key_bytes(b"abc") == b"abc"
    assert key_bytes({"b": 1, "a": 2}) == key_bytes({"a": 2, "b": 1})
    assert key_bytes(None) is None


def test_switch_ends_a_split_and_each_change_is_recorded():
    s = split_state({"v1": 90, "v2": 10})
    s = s.apply(Change.switch("v3", reason="v3 is better", source="cli"))
    assert s.default == "v3" and s.weights == {} and s.revision == 2
    assert [c.action for c in s.history] == ["split", "switch"]
    assert s.history[-1].reason == "v3 is better" and s.history[-1].source == "cli"
    assert s.history[-1].describe() == "switch to v3 (v3 is better)"


def test_the_audit_trail_is_bounded():
    s = RoutingState.initial("fraud", "v1", versions=("v1", "v2"))
    for i in range(HISTORY + 5):
        s = s.apply(Change.switch("v2" if i % 2 else "v1"))
    assert len(s.history) == HISTORY and s.revision == HISTORY + 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (Change.switch("v9"), "has no version 'v9'; registered: v1, v2"),
        (Change.split({"v1": 0, "v2": 0}), "must add up to more than 0"),
        (Change.split({"v1": -1, "v2": 5}), "split weight of 'v1' must be >= 0"),
        (Change.shadow("v1"), "'v1' is the default version"),
        (Change.shadow("v2", rate=1.5), "shadow rate must be in (0, 1]"),
    ],
)
def test_bad_changes_name_the_problem(change, message):
    s = RoutingState.initial("fraud", "v1", versions=("v1", "v2"))
    with pytest.raises(ConfigurationError, match=None) as info:
        s.apply(change)
    assert message in str(info.value)


def test_weights_are_normalised_to_percent():
    s = split_state({"v1": 9, "v2": 1})
    assert s.weights == pytest.approx({"v1": 90.0, "v2": 10.0})
    assert s.arms() == [("v1", pytest.approx(90.0)), ("v2", pytest.approx(10.0))]


def test_shadow_sampling_is_sticky_and_near_its_rate():
    s = RoutingState.initial("fraud", "v1", versions=("v1", "v2")).apply(Change.shadow("v2", 0.1))
    chosen = [k for k in KEYS if s.wants_shadow(k)]
    assert 0.08 < len(chosen) / len(KEYS) < 0.12
    assert chosen == [k for k in KEYS if s.wants_shadow(k)]
    off = s.apply(Change.shadow_off())
    assert not any(off.wants_shadow(k) for k in KEYS[:100])
