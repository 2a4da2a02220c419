"""The circuit breaker alone, and in the runner: wait while open, or fall back."""

import random

import pytest

from faust_inference import (
    ClientError,
    InferenceError,
    ModelSettings,
    ResponseDecodeError,
    RetriesExhausted,
    ServerError,
    TransportError,
)
from faust_inference.config import CircuitBreakerSettings
from faust_inference.core.breaker import CircuitBreaker
from faust_inference.core.hooks import InferenceHooks
from faust_inference.core.runner import InferenceRunner
from tests.unit.fakes import FakeClock, FakeProvider


def test_opens_after_consecutive_failures_only():
    breaker = CircuitBreaker(CircuitBreakerSettings(failures=3), FakeClock())
    for failed in (True, True, False, True, True):
        breaker.record(failed=failed)
    assert breaker.state == "closed"  # the success reset the count
    breaker.record(failed=True)
    assert breaker.state == "open"


def test_half_open_lets_probes_through_then_closes_on_success():
    clock = FakeClock()
    states: list[str] = []
    breaker = CircuitBreaker(
        CircuitBreakerSettings(failures=1, reset_timeout=5, probes=1), clock, states.append
    )
    breaker.record(failed=True)
    assert not breaker.allow()
    clock.now = 5.0
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one probe at a time
    breaker.record(failed=True)  # the probe failed: open again, for another 5 s
    clock.now = 9.0
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.allow()
    breaker.record(failed=False)
    assert breaker.allow() and breaker.allow()
    assert states == ["open", "half_open", "open", "half_open", "closed"]


def test_a_cancelled_probe_frees_its_place():
    clock = FakeClock()
    breaker = CircuitBreaker(CircuitBreakerSettings(failures=1, reset_timeout=1), clock)
    breaker.record(failed=True)
    clock.now = 1.0
    assert breaker.allow() and not breaker.allow()
    breaker.release()
    assert breaker.allow()


class StateLog(InferenceHooks):
    def __init__(self) -> None:
        self.states: list[str] = []
        self.fallbacks = 0

    def on_circuit_change(self, settings, state):
        self.states.append(state)

    def on_fallback(self, settings, error):
        self.fallbacks += 1


def make_runner(provider, clock, hooks, **settings):
    s = ModelSettings(name="m", provider="fake", batch_timeout=0, **settings)
    return InferenceRunner(provider, s, clock=clock, rng=random.Random(0), hooks=hooks)


async def test_while_open_calls_wait_and_succeed_once_the_endpoint_is_back():
    clock, log, provider = FakeClock(), StateLog(), FakeProvider()
    provider.script.extend(ServerError("down", status=503) for _ in range(5))
    breaker = {"failures": 3, "reset_timeout": 5.0}
    runner = make_runner(provider, clock, log, retries=3, circuit_breaker=breaker)
    outcome = await runner.submit(1)
    # Three failures open it; two failed probes reopen it; the third probe works.
    assert outcome.output == 2 and outcome.attempts == 6
    assert log.states == ["open", "half_open", "open", "half_open", "open", "half_open", "closed"]
    assert clock.sleeps.count(5.0) == 3
    await runner.aclose()


async def test_while_open_the_fallback_answers_without_calling():
    clock, log = FakeClock(), StateLog()
    provider = FakeProvider(fail_on=lambda _: TransportError("refused"))
    breaker = {"failures": 2, "reset_timeout": 30.0, "on_open": "fallback"}
    runner = make_runner(
        provider, clock, log, retries=1, circuit_breaker=breaker, default_output=-1
    )
    first = await runner.submit(1)  # two failed attempts open the circuit
    calls = len(provider.batches)
    later = [await runner.submit(i) for i in range(5)]
    assert calls == 2 and len(provider.batches) == 2  # no call while open
    assert [o.output for o in (first, *later)] == [-1] * 6
    assert log.fallbacks == 6 and runner.breaker is not None
    assert runner.breaker.state == "open"
    await runner.aclose()


async def test_answers_of_a_working_server_do_not_open_it():
    clock, log = FakeClock(), StateLog()
    provider = FakeProvider(fail_on=lambda _: ClientError("bad", status=400))
    runner = make_runner(provider, clock, log, retries=0, circuit_breaker={"failures": 1})
    for i in range(3):
        with pytest.raises(ClientError):
            await runner.predict(i)
    assert log.states == []
    await runner.aclose()


async def test_models_on_one_endpoint_share_its_breaker(registry):
    states: list[tuple[str, str]] = []

    class Log(InferenceHooks):
        def on_circuit_change(self, settings, state):
            states.append((settings.name, state))

    registry.hooks.add(Log())
    common = {"provider": "http", "circuit_breaker": {"failures": 1}}
    a = registry.register("a", endpoint="http://127.0.0.1:9", **common)
    b = registry.register("b", endpoint="http://127.0.0.1:9", **common)
    c = registry.register("c", endpoint="http://127.0.0.1:10", **common)
    assert a.runner.breaker is b.runner.breaker is not c.runner.breaker
    # On by default; off when asked.
    assert registry.register("d", provider="http", endpoint="http://x:1").runner.breaker
    off = registry.register("e", provider="http", endpoint="http://x:1", circuit_breaker=False)
    assert off.runner.breaker is None
    a.runner.breaker.record(failed=True)
    assert states == [("a", "open"), ("b", "open")]


# -- the outage budget: outages slow the stream, they do not fail its events --------


async def test_a_stream_event_waits_out_an_outage_shorter_than_the_budget():
    clock, log = FakeClock(), StateLog()
    down_until = 120.0  # two minutes of refused connections

    def refuse(_inputs):
        return TransportError("refused") if clock.now < down_until else None

    provider = FakeProvider(fail_on=refuse)
    runner = make_runner(provider, clock, log, retries=2, outage_budget=300)
    outcome = await runner.submit(1)  # a stream event: patient
    assert outcome.output == 2
    assert clock.now >= down_until
    assert log.states[0] == "open" and log.states[-1] == "closed"
    await runner.aclose()


async def test_past_the_budget_waiting_events_fail_and_name_the_setting():
    clock, log = FakeClock(), StateLog()
    provider = FakeProvider(fail_on=lambda _: ServerError("down", status=503))
    runner = make_runner(provider, clock, log, retries=2, outage_budget=60)
    with pytest.raises(InferenceError) as failed:
        await runner.submit(1)
    assert 60 <= clock.now < 60 + 2 * 10  # within a reset_timeout or two of the budget
    later = runner.submit(2)  # arrives after the budget: refused at once
    with pytest.raises(InferenceError, match="outage_budget=60s"):
        await later
    assert "down" in str(failed.value) or "outage_budget" in str(failed.value)
    await runner.aclose()


async def test_the_first_failures_before_the_breaker_opens_are_held_too():
    # One event at a time: its retries run out before five consecutive failures
    # open the breaker; nothing has answered since, so it is an outage.
    clock, log = FakeClock(), StateLog()

    def refuse(_inputs):
        return TransportError("refused") if clock.now < 30 else None

    provider = FakeProvider(fail_on=refuse)
    runner = make_runner(provider, clock, log, retries=1, outage_budget=300)
    assert (await runner.submit(1)).output == 2
    await runner.aclose()


async def test_a_direct_predict_fails_after_its_retries_instead_of_waiting():
    clock, log = FakeClock(), StateLog()
    provider = FakeProvider(fail_on=lambda _: TransportError("refused"))
    runner = make_runner(provider, clock, log, retries=2, outage_budget=300)
    with pytest.raises(RetriesExhausted):
        await runner.predict(1)
    assert clock.now < 5
    await runner.aclose()


async def test_a_bad_event_is_still_failed_at_once_while_the_server_answers_others():
    clock, log = FakeClock(), StateLog()
    provider = FakeProvider(
        fail_on=lambda inputs: ClientError("bad row", status=400) if 7 in inputs else None
    )
    runner = make_runner(provider, clock, log, retries=2, outage_budget=300)
    assert (await runner.submit(1)).output == 2
    with pytest.raises(ClientError):
        await runner.submit(7)
    assert clock.now < 1 and log.states == []
    await runner.aclose()


async def test_a_server_answering_garbage_is_an_outage_too():
    clock, log = FakeClock(), StateLog()

    def garbage(_inputs):
        return ResponseDecodeError("not JSON") if clock.now < 20 else None

    provider = FakeProvider(fail_on=garbage)
    runner = make_runner(provider, clock, log, retries=1, outage_budget=300)
    assert (await runner.submit(3)).output == 6
    await runner.aclose()
