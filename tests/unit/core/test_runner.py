import asyncio
import random

import pytest

from faust_inference import (
    ClientError,
    InferenceTimeout,
    InvalidInput,
    ModelSettings,
    Predictions,
    RateLimited,
    ResponseDecodeError,
    RetriesExhausted,
    ServerError,
)
from faust_inference.core.runner import AUTO_BATCH_LIMIT, InferenceRunner
from tests.unit.fakes import FakeClock, FakeProvider, settle


def make_runner(provider, clock=None, fallback=None, **settings):
    settings.setdefault("batch_timeout", 0.0)
    # Retries, batching and fallbacks on their own: the breaker's outage
    # handling (on by default) has its own tests in test_breaker.py.
    settings.setdefault("circuit_breaker", False)
    s = ModelSettings(name=settings.pop("name", "m"), provider="fake", **settings)
    return InferenceRunner(
        provider, s, clock=clock or FakeClock(), fallback=fallback, rng=random.Random(0)
    )


@pytest.mark.asyncio
async def test_batches_fill_while_every_slot_is_busy():
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    runner = make_runner(provider, max_concurrency=1, batch_size=4)
    futures = [runner.submit(0)]
    await settle()
    assert provider.batches == [[0]]  # the first input went out alone
    futures += [runner.submit(i) for i in range(1, 9)]
    await settle()
    assert provider.batches == [[0]]  # the only slot is still busy
    provider.gate.set()
    outcomes = await asyncio.gather(*futures)
    assert [o.output for o in outcomes] == [2 * i for i in range(9)]
    assert provider.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8]]
    await runner.aclose()


@pytest.mark.asyncio
async def test_batch_timeout_waits_for_company():
    clock = FakeClock()
    provider = FakeProvider()
    runner = make_runner(provider, clock, batch_size=8, batch_timeout=0.05)
    first = runner.submit(1)
    await clock.advance(0.01)
    second = runner.submit(2)
    await clock.advance(0.03)
    assert provider.batches == []  # 0.04 s: still waiting for company
    await clock.advance(0.01)  # batch_timeout reached
    await asyncio.gather(first, second)
    assert provider.batches == [[1, 2]]
    await runner.aclose()


@pytest.mark.asyncio
async def test_a_full_batch_goes_at_once_and_disarms_its_timer():
    clock = FakeClock()
    provider = FakeProvider()
    runner = make_runner(provider, clock, batch_size=3, batch_timeout=1.0)
    futures = [runner.submit(1)]
    await settle()
    assert provider.batches == [] and len(clock.pending_timers) == 1
    futures += [runner.submit(2), runner.submit(3)]
    await asyncio.gather(*futures)  # no time passed
    assert provider.batches == [[1, 2, 3]] and clock.now == 0.0
    assert clock.pending_timers == []
    await runner.aclose()


@pytest.mark.asyncio
async def test_at_a_trickle_inputs_go_out_without_waiting_for_company():
    clock = FakeClock()
    provider = FakeProvider()
    runner = make_runner(provider, clock, batch_size=8, batch_timeout=0.2)
    for i in range(6):
        future = runner.submit(i)
        await clock.advance(0.05)  # a quarter of batch_timeout
        if i >= 1:  # once a gap (0.3 s, longer than batch_timeout) has been seen
            assert future.done(), f"input {i} waited for company that was not coming"
        await clock.advance(0.25)
        assert future.done()  # the first one after batch_timeout
    assert provider.batches == [[i] for i in range(6)]
    # A burst after the trickle is batched again.
    outcomes = await asyncio.gather(*(runner.submit(i) for i in range(8)))
    assert len(outcomes) == 8 and provider.batches[-1] == list(range(8))
    await runner.aclose()


@pytest.mark.asyncio
async def test_behind_the_stream_a_batch_keeps_filling_past_batch_timeout():
    clock = FakeClock()
    provider = FakeProvider()
    runner = make_runner(provider, clock, batch_size=8, batch_timeout=0.05)
    # A backlog of 100 at the source; the worker reads one every 0.03 s.
    futures = []
    for i in range(8):
        futures.append(runner.submit(i, backlog=100 - i))
        if i < 7:
            await clock.advance(0.03)
            assert provider.batches == [], f"sent after {clock.now:.2f} s with the backlog waiting"
    await asyncio.gather(*futures)
    # 0.21 s, four times batch_timeout: one full batch instead of five small ones.
    assert provider.batches == [list(range(8))]
    await runner.aclose()


@pytest.mark.asyncio
async def test_behind_the_stream_a_batch_goes_once_inputs_stop_coming():
    clock = FakeClock()
    provider = FakeProvider()
    runner = make_runner(provider, clock, batch_size=8, batch_timeout=0.05)
    first = runner.submit(1, backlog=50)
    await clock.advance(0.03)
    second = runner.submit(2, backlog=49)
    await clock.advance(0.049)
    assert provider.batches == []  # the last input came 0.049 s ago: more may come
    await clock.advance(0.002)  # quiet for batch_timeout: the reader is stuck elsewhere
    await asyncio.gather(first, second)
    assert provider.batches == [[1, 2]]
    await runner.aclose()


@pytest.mark.asyncio
async def test_a_backlog_smaller_than_the_rest_of_the_batch_does_not_extend_the_wait():
    clock = FakeClock()
    provider = FakeProvider()
    runner = make_runner(provider, clock, batch_size=8, batch_timeout=0.05)
    futures = [runner.submit(1, backlog=3)]
    await clock.advance(0.03)
    futures.append(runner.submit(2, backlog=2))  # 2 behind, 6 missing: it cannot fill
    await clock.advance(0.02)  # batch_timeout after the first
    await asyncio.gather(*futures)
    assert provider.batches == [[1, 2]]
    await runner.aclose()


@pytest.mark.asyncio
async def test_provider_batch_limit_caps_the_batch_size():
    provider = FakeProvider(max_batch_size=1)
    runner = make_runner(provider, batch_size=16)
    assert runner.batch_size == 1
    await runner.predict_many(range(3))
    assert provider.batches == [[0], [1], [2]]
    await runner.aclose()


@pytest.mark.asyncio
async def test_in_flight_is_capped_at_max_concurrency():
    provider = FakeProvider(delay=0.01)
    runner = make_runner(provider, max_concurrency=3)
    outputs = await runner.predict_many(range(30))
    assert outputs == [2 * i for i in range(30)]
    assert provider.peak == 3
    await runner.aclose()


@pytest.mark.asyncio
async def test_retryable_errors_are_retried_with_backoff():
    provider = FakeProvider()
    provider.script.extend([ServerError("boom", status=503), RateLimited("slow", retry_after=2.5)])
    clock = FakeClock()
    runner = make_runner(provider, clock=clock, retries=3)
    outcome = await runner.submit(21)
    assert outcome.output == 42 and outcome.attempts == 3
    assert len(clock.sleeps) == 2
    assert 0.05 <= clock.sleeps[0] <= 0.1  # first backoff: 0.1 with 50% jitter
    assert clock.sleeps[1] == 2.5  # Retry-After honoured
    await runner.aclose()


@pytest.mark.asyncio
async def test_client_errors_are_not_retried():
    provider = FakeProvider()
    provider.script.append(ClientError("bad request", status=400))
    runner = make_runner(provider, retries=5)
    with pytest.raises(ClientError) as info:
        await runner.predict(1)
    assert info.value.attempts == 1
    assert len(provider.batches) == 1
    await runner.aclose()


@pytest.mark.asyncio
async def test_exhausted_retries_keep_the_last_error():
    provider = FakeProvider(fail_on=lambda _: ServerError("down", status=502))
    clock = FakeClock()
    runner = make_runner(provider, clock=clock, retries=2)
    with pytest.raises(RetriesExhausted) as info:
        await runner.predict(1)
    assert info.value.attempts == 3
    assert isinstance(info.value.last_error, ServerError)
    assert info.value.__cause__ is info.value.last_error
    assert len(provider.batches) == 3 and len(clock.sleeps) == 2
    await runner.aclose()


@pytest.mark.asyncio
async def test_a_slow_call_times_out_and_is_retried():
    provider = FakeProvider()
    provider.gate = asyncio.Event()  # never set: the first call hangs
    runner = make_runner(provider, timeout=0.02, retries=1)

    async def release_after_first_timeout():
        while len(provider.batches) < 2:
            await asyncio.sleep(0.005)
        provider.gate.set()

    helper = asyncio.create_task(release_after_first_timeout())
    outcome = await runner.submit(5)
    await helper
    assert outcome.output == 10 and outcome.attempts == 2
    await runner.aclose()


@pytest.mark.asyncio
async def test_timeouts_end_as_retries_exhausted():
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    runner = make_runner(provider, timeout=0.01, retries=1)
    with pytest.raises(RetriesExhausted) as info:
        await runner.predict(1)
    assert isinstance(info.value.last_error, InferenceTimeout)
    await runner.aclose()


@pytest.mark.asyncio
async def test_one_bad_input_does_not_fail_its_batch():
    def reject_bad(inputs):
        return ClientError("row 'bad' is invalid", status=400) if "bad" in inputs else None

    provider = FakeProvider(fn=str.upper, fail_on=reject_bad)
    provider.gate = asyncio.Event()
    runner = make_runner(provider, batch_size=4, max_concurrency=1)
    futures = [runner.submit(x) for x in ["a", "b", "bad", "c"]]
    await asyncio.sleep(0)
    provider.gate.set()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert [r.output if not isinstance(r, Exception) else "ERR" for r in results] == [
        "A",
        "B",
        "ERR",
        "C",
    ]
    assert isinstance(results[2], ClientError)
    await runner.aclose()


@pytest.mark.asyncio
async def test_fallback_model_answers_when_primary_fails():
    backup = make_runner(FakeProvider(fn=lambda x: -x), name="backup")
    settings = ModelSettings(
        name="primary", provider="fake", retries=1, fallback="backup", batch_timeout=0
    )
    primary = InferenceRunner(
        FakeProvider(fail_on=lambda _: ServerError("down", status=503)),
        settings,
        clock=FakeClock(),
        fallback={"backup": backup}.__getitem__,
    )
    outcome = await primary.submit(3)
    assert outcome.output == -3
    assert outcome.fallback is True and outcome.model == "backup"
    assert outcome.attempts == 3  # two on the primary, one on the backup
    await primary.aclose()
    await backup.aclose()


@pytest.mark.asyncio
async def test_default_output_is_used_when_everything_fails():
    runner = make_runner(
        FakeProvider(fail_on=lambda _: ServerError("down", status=500)),
        retries=0,
        default_output=[1.0, 0.0],
    )
    outcome = await runner.submit(1)
    assert outcome.output == [1.0, 0.0] and outcome.fallback is True
    await runner.aclose()


@pytest.mark.asyncio
async def test_bad_input_never_takes_the_default_output():
    runner = make_runner(
        FakeProvider(fail_on=lambda _: InvalidInput("features", "not numbers")),
        default_output=0,
    )
    with pytest.raises(InvalidInput):
        await runner.predict("x")
    await runner.aclose()


@pytest.mark.asyncio
async def test_wrong_number_of_outputs_is_a_decode_error():
    class Short(FakeProvider):
        async def infer(self, inputs):
            return Predictions([1])

    runner = make_runner(Short(), batch_size=2, max_concurrency=1, retries=3)
    futures = [runner.submit(1), runner.submit(2)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    # The batch was split, and each single input then got its one output.
    assert [getattr(r, "output", r) for r in results] == [1, 1]

    runner2 = make_runner(
        type("Empty", (FakeProvider,), {"infer": lambda self, inputs: _empty()})()
    )
    with pytest.raises(ResponseDecodeError, match="0 outputs for 1 inputs"):
        await runner2.predict(1)
    await runner.aclose()
    await runner2.aclose()


async def _empty():
    return Predictions([])


@pytest.mark.asyncio
async def test_close_cancels_queued_work_and_closes_the_provider():
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    runner = make_runner(provider, max_concurrency=1)
    futures = [runner.submit(i) for i in range(3)]
    await settle()
    await runner.aclose()
    assert provider.closed
    assert all(f.cancelled() for f in futures)
    with pytest.raises(RuntimeError, match="closed"):
        runner.submit(1)


@pytest.mark.asyncio
async def test_a_batch_failing_with_plain_500s_is_split_after_its_retries():
    # MLServer answers a malformed row with 500 and fails the whole batch.
    def reject_bad(inputs):
        return ServerError("Internal Server Error", status=500) if "bad" in inputs else None

    provider = FakeProvider(fn=str.upper, fail_on=reject_bad)
    provider.gate = asyncio.Event()
    runner = make_runner(provider, batch_size=3, max_concurrency=1, retries=1)
    futures = [runner.submit(x) for x in ["a", "bad", "c"]]
    await asyncio.sleep(0)
    provider.gate.set()
    a, bad, c = await asyncio.gather(*futures, return_exceptions=True)
    assert (a.output, c.output) == ("A", "C")
    assert isinstance(bad, RetriesExhausted) and bad.last_error.status == 500
    # Two attempts as a batch, then one alone each: the split is not retried again.
    assert [len(b) for b in provider.batches] == [3, 3, 1, 1, 1]
    assert bad.attempts == 3 and a.attempts == 3


@pytest.mark.asyncio
async def test_callers_that_gave_up_do_not_leak_a_slot():
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    runner = make_runner(provider, max_concurrency=1)
    busy = runner.submit(0)
    await settle()
    abandoned = runner.submit(1)
    abandoned.cancel()
    provider.gate.set()
    await busy
    assert (await runner.submit(2)).output == 4  # the slot came back
    await runner.aclose()


@pytest.mark.asyncio
async def test_unavailable_servers_do_not_split_batches():
    provider = FakeProvider(fail_on=lambda _: ServerError("unavailable", status=503))
    provider.gate = asyncio.Event()
    runner = make_runner(provider, batch_size=4, max_concurrency=1, retries=1)
    futures = [runner.submit(i) for i in range(4)]
    await asyncio.sleep(0)
    provider.gate.set()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, RetriesExhausted) for r in results)
    assert [len(b) for b in provider.batches] == [4, 4]  # two attempts, never split


@pytest.mark.asyncio
async def test_a_missing_fallback_fails_the_call_instead_of_hanging():
    from faust_inference import ModelNotFound

    def lookup(name):
        raise ModelNotFound(f"no model named {name!r}")

    settings = ModelSettings(name="p", provider="fake", retries=0, fallback="gone", batch_timeout=0)
    runner = InferenceRunner(
        FakeProvider(fail_on=lambda _: ServerError("down", status=503)),
        settings,
        clock=FakeClock(),
        fallback=lookup,
    )
    with pytest.raises(ServerError):
        await asyncio.wait_for(runner.predict(1), 5)
    await runner.aclose()


# -- batch_size="auto" ---------------------------------------------------------------


def sizes(provider):
    return [len(b) for b in provider.batches]


def refuse_batches_over(n, error, message, status):
    """A server that answers ``error(message, status)`` to any request of more than ``n`` inputs."""
    return lambda inputs: error(message, status=status) if len(inputs) > n else None


@pytest.mark.asyncio
async def test_auto_batches_double_while_full_up_to_the_limit():
    provider = FakeProvider(batching=True)
    runner = make_runner(provider, max_concurrency=1)  # batch_size="auto", the default
    assert runner.auto and runner.batch_size == AUTO_BATCH_LIMIT == 64
    assert runner.current_batch_size == 1
    outputs = await runner.predict_many(range(300))
    assert outputs == [2 * i for i in range(300)]
    assert sizes(provider) == [1, 2, 4, 8, 16, 32, 64, 64, 64, 45]
    await runner.aclose()


@pytest.mark.asyncio
async def test_auto_does_not_grow_on_batches_that_were_not_full():
    provider = FakeProvider(batching=True)
    runner = make_runner(provider, max_concurrency=1)
    await runner.predict_many(range(3))  # 1, then 2 (full): may grow to 4
    for i in range(3):  # one at a time: never full beyond 1
        await runner.predict(i)
    assert runner.current_batch_size == 4
    assert sizes(provider) == [1, 2, 1, 1, 1]
    await runner.aclose()


@pytest.mark.parametrize(
    ("provider", "settings", "expected"),
    [
        (FakeProvider(), {}, 1),  # a provider that does not say it batches: one per request
        (FakeProvider(batching=True, max_batch_size=1), {}, 1),  # chat
        (FakeProvider(batching=True, max_batch_size=8), {}, 8),  # the provider's limit
        (FakeProvider(batching=True), {"batch_size": 16}, 16),  # an int is fixed, as before
        (FakeProvider(batching=True), {"batch_size": 1}, 1),  # 1 turns batching off
    ],
)
def test_auto_only_where_the_provider_batches_and_ints_stay_fixed(provider, settings, expected):
    runner = make_runner(provider, **settings)
    assert runner.batch_size == expected
    assert runner.auto == (expected == 8)
    assert runner.current_batch_size == (1 if runner.auto else expected)


@pytest.mark.asyncio
async def test_auto_falls_back_to_one_when_the_server_refuses_batches(caplog):
    refuse = refuse_batches_over(1, ClientError, "batch dimension must be 1", 400)
    provider = FakeProvider(batching=True, fail_on=refuse)
    runner = make_runner(provider, max_concurrency=1)
    with caplog.at_level("WARNING", logger="faust_inference.core.runner"):
        outputs = await runner.predict_many(range(20))
    assert outputs == [2 * i for i in range(20)]  # nothing failed
    # [0] passed, [1, 2] was refused and sent again alone, then one per request.
    assert sizes(provider) == [1, 2] + [1] * 19
    assert runner.batch_size == runner.current_batch_size == 1
    refusals = [r for r in caplog.records if "refused a batch of 2" in r.getMessage()]
    assert len(refusals) == 1 and "at most 1 per request" in refusals[0].getMessage()
    await runner.predict_many(range(5))
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1  # once
    await runner.aclose()


@pytest.mark.asyncio
async def test_auto_keeps_the_largest_batch_the_server_accepted():
    # A server with a batch limit of its own (Triton's max_batch_size: 4).
    refuse = refuse_batches_over(4, ClientError, "batch too large", 400)
    provider = FakeProvider(batching=True, fail_on=refuse)
    runner = make_runner(provider, max_concurrency=1)
    outputs = await runner.predict_many(range(40))
    assert outputs == [2 * i for i in range(40)]
    assert sizes(provider) == [1, 2, 4, 8] + [1] * 8 + [4] * 6 + [1]
    assert runner.batch_size == 4
    await runner.aclose()


@pytest.mark.asyncio
async def test_auto_falls_back_on_plain_500s_too_after_the_retries():
    refuse = refuse_batches_over(1, ServerError, "Internal Server Error", 500)
    provider = FakeProvider(batching=True, fail_on=refuse)
    runner = make_runner(provider, max_concurrency=1, retries=1)
    outputs = await runner.predict_many(range(6))
    assert outputs == [2 * i for i in range(6)]
    assert sizes(provider) == [1, 2, 2, 1, 1, 1, 1, 1]  # the batch's 2 attempts, then alone
    assert runner.batch_size == 1
    await runner.aclose()


@pytest.mark.asyncio
async def test_auto_keeps_batching_when_one_bad_input_failed_its_batch():
    def reject_bad(inputs):
        return ClientError("row 'bad' is invalid", status=400) if "bad" in inputs else None

    provider = FakeProvider(fn=str.upper, fail_on=reject_bad, batching=True)
    runner = make_runner(provider, max_concurrency=1)
    values = ["a", "b", "bad", "c", "d", "e", "f", "g", "h", "i", "j"]
    results = await asyncio.gather(*(runner.submit(v) for v in values), return_exceptions=True)
    assert isinstance(results[2], ClientError)
    assert [r.output for i, r in enumerate(results) if i != 2] == [
        v.upper() for v in values if v != "bad"
    ]
    # [a], [b, bad] refused, b and bad alone (bad fails: its fault), then still growing.
    assert sizes(provider) == [1, 2, 1, 1, 2, 4, 2]
    assert runner.batch_size == AUTO_BATCH_LIMIT
    await runner.aclose()


@pytest.mark.asyncio
async def test_auto_fallback_on_plain_500s_does_not_wait_for_the_circuit_breaker():
    # The default registration: breaker on, 16 in flight. A server answering
    # 500 to every batch is not down: its events pass alone at once.
    refuse = refuse_batches_over(1, ServerError, "Internal Server Error", 500)
    clock = FakeClock()
    provider = FakeProvider(batching=True, fail_on=refuse)
    runner = make_runner(provider, clock, circuit_breaker=True)
    events = await asyncio.wait_for(asyncio.gather(*(runner.submit(i) for i in range(100))), 5)
    assert [e.output for e in events] == [2 * i for i in range(100)]
    calls = await asyncio.wait_for(runner.predict_many(range(100)), 5)  # impatient callers too
    assert calls == [2 * i for i in range(100)]
    assert runner.batch_size == 1
    # The refused batches' backoff only (the fake clock adds concurrent sleeps
    # up), never the breaker's outage (outage_budget: 300 s).
    assert clock.now < 30
    await runner.aclose()
