import asyncio

import pytest

from faust_inference import (
    ConfigurationError,
    Envelope,
    InvalidInput,
    ModelSettings,
    ServerError,
    StreamInference,
)
from faust_inference.core.runner import InferenceRunner
from tests.unit.fakes import FakeClock, FakeProvider


class SlowFirst(FakeProvider):
    """Input value v takes (10 - v % 10) ms: later events finish first."""

    async def infer(self, inputs):
        await asyncio.sleep(max(0.001, (10 - inputs[0] % 10) / 1000))
        return await super().infer(inputs)


def runner_for(provider, **settings):
    settings.setdefault("batch_timeout", 0.0)
    settings.setdefault("max_concurrency", 64)
    # The pipeline's ordering and acknowledgements on their own: holding
    # events through an outage is the breaker's (test_breaker.py).
    settings.setdefault("circuit_breaker", False)
    return InferenceRunner(
        provider, ModelSettings(name="m", provider="fake", **settings), clock=FakeClock()
    )


async def ACK(envelope):
    """An ack callback for tests that do not look at acknowledgements."""


async def envelopes(values, lanes=2, log=None):
    for i, v in enumerate(values):
        if log is not None:
            log.append(v)
        yield Envelope(value=v, lane=i % lanes, handle=i, partition=i % lanes, offset=i // lanes)


@pytest.mark.asyncio
async def test_results_keep_input_order_within_each_lane():
    runner = runner_for(SlowFirst())
    acked = []

    async def ack(env):
        acked.append(env.handle)

    got = [r async for r in StreamInference(runner, envelopes(range(20)), ack=ack)]
    for lane in (0, 1):
        lane_values = [r.event for r in got if r.partition == lane]
        assert lane_values == sorted(lane_values)
        assert [h for h in acked if h % 2 == lane] == [h for h in range(20) if h % 2 == lane]
    assert [r.output for r in got] == [2 * r.event for r in got]
    assert sorted(r.event for r in got) == list(range(20))
    await runner.aclose()


@pytest.mark.asyncio
async def test_unordered_results_overtake_but_acks_stay_in_order():
    runner = runner_for(SlowFirst())
    acked = []

    async def ack(env):
        acked.append(env.handle)

    pipeline = StreamInference(runner, envelopes(range(10), lanes=1), ack=ack, ordered=False)
    got = [r.event async for r in pipeline]
    assert sorted(got) == list(range(10))
    assert got != sorted(got)  # fast results overtook slow ones
    assert acked == list(range(10))
    await runner.aclose()


@pytest.mark.asyncio
async def test_an_event_is_acked_only_after_the_agent_moves_past_it():
    runner = runner_for(FakeProvider())
    acked = []

    async def ack(env):
        acked.append(env.value)

    results = aiter(StreamInference(runner, envelopes([1, 2], lanes=1), ack=ack))
    first = await anext(results)
    assert first.event == 1
    await asyncio.sleep(0.01)
    assert acked == []  # the agent still holds result 1
    second = await anext(results)
    assert second.event == 2 and acked == [1]
    with pytest.raises(StopAsyncIteration):
        await anext(results)
    assert acked == [1, 2]
    await runner.aclose()


@pytest.mark.asyncio
async def test_failed_events_go_to_the_dead_letter_callback_before_their_ack():
    provider = FakeProvider(fail_on=lambda xs: ServerError("down", status=503) if 3 in xs else None)
    runner = runner_for(provider, retries=1)
    log = []

    async def ack(env):
        log.append(("ack", env.value))

    async def dead_letter(env, error):
        log.append(("dead", env.value, type(error).__name__, error.attempts))

    pipeline = StreamInference(
        runner, envelopes([1, 2, 3, 4], lanes=1), ack=ack, dead_letter=dead_letter
    )
    got = [r.event async for r in pipeline]
    assert got == [1, 2, 4]
    assert log == [
        ("ack", 1),
        ("ack", 2),
        ("dead", 3, "RetriesExhausted", 2),
        ("ack", 3),
        ("ack", 4),
    ]
    await runner.aclose()


@pytest.mark.asyncio
async def test_without_dead_letters_failures_reach_the_agent():
    runner = runner_for(FakeProvider(), retries=0)

    def prepare(value):
        if value == "bad":
            raise ValueError("amount must be a number")
        return 1

    pipeline = StreamInference(runner, envelopes(["ok", "bad"], lanes=1), ack=ACK, prepare=prepare)
    ok, bad = [r async for r in pipeline]
    assert ok.ok and ok.output == 2
    assert not bad.ok and bad.output is None
    assert isinstance(bad.error, InvalidInput)
    assert "amount must be a number" in str(bad.error) and bad.error.attempts == 0
    await runner.aclose()


@pytest.mark.asyncio
async def test_reading_pauses_at_max_pending():
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    runner = runner_for(provider)
    pulled = []

    pipeline = StreamInference(runner, envelopes(range(100), log=pulled), ack=ACK, max_pending=8)
    results = aiter(pipeline)
    consumer = asyncio.create_task(anext(results))
    await asyncio.sleep(0.02)
    assert len(pulled) == 9  # 8 admitted, the 9th waits for room
    provider.gate.set()
    await consumer
    rest = [r async for r in results]
    assert len(rest) == 99
    await runner.aclose()


@pytest.mark.asyncio
async def test_a_failing_source_surfaces_in_the_agent():
    runner = runner_for(FakeProvider())

    async def broken():
        yield Envelope(value=1, lane=0, handle=0)
        raise RuntimeError("broker gone")

    with pytest.raises(RuntimeError, match="broker gone"):
        async for _ in StreamInference(runner, broken(), ack=ACK):
            pass
    await runner.aclose()


@pytest.mark.asyncio
async def test_batches_form_across_lanes():
    provider = FakeProvider()
    runner = runner_for(provider, batch_size=8, max_concurrency=1, batch_timeout=0.01)

    got = [r async for r in StreamInference(runner, envelopes(range(16), lanes=4), ack=ACK)]
    assert len(got) == 16
    assert max(len(b) for b in provider.batches) == 8
    await runner.aclose()


@pytest.mark.asyncio
async def test_agents_sharing_a_model_share_its_in_flight_cap():
    provider = FakeProvider(delay=0.005)
    runner = runner_for(provider, max_concurrency=3)

    async def agent(values):
        return [r.output async for r in StreamInference(runner, envelopes(values), ack=ACK)]

    first, second = await asyncio.gather(agent(range(40)), agent(range(100, 140)))
    assert sorted(first) == [2 * v for v in range(40)]
    assert sorted(second) == [2 * v for v in range(100, 140)]
    assert provider.peak == 3
    await runner.aclose()


@pytest.mark.asyncio
async def test_an_agent_that_raises_on_a_result_dead_letters_it_and_carries_on():
    runner = runner_for(FakeProvider())
    log = []

    async def ack(env):
        log.append(("ack", env.value))

    async def dead_letter(env, error):
        log.append(("dead", env.value, str(error)))

    pipeline = StreamInference(
        runner, envelopes(range(5), lanes=1), ack=ack, dead_letter=dead_letter
    )
    seen = []

    async def agent():
        async for r in pipeline:
            if r.event == 2 and 2 not in seen:
                seen.append(2)
                raise KeyError("no such customer")
            seen.append(r.event)

    with pytest.raises(KeyError):
        await agent()
    assert pipeline.holding
    assert await pipeline.reject_current(KeyError("no such customer")) is True
    await agent()  # called again, as infer() does: it continues after event 2
    assert seen == [0, 1, 2, 3, 4]
    assert log == [
        ("ack", 0),
        ("ack", 1),
        ("dead", 2, "'no such customer'"),
        ("ack", 2),
        ("ack", 3),
        ("ack", 4),
    ]
    await runner.aclose()


@pytest.mark.parametrize("max_pending", [0, -3, 2.5, True])
def test_a_bad_max_pending_is_a_configuration_error_naming_it(max_pending):
    runner = runner_for(FakeProvider())
    with pytest.raises(ConfigurationError) as info:
        StreamInference(runner, envelopes([]), ack=ACK, max_pending=max_pending)
    assert f"max_pending must be a whole number of at least 1, got {max_pending!r}" in str(
        info.value
    )
