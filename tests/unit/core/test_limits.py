"""Rate limits: token buckets, AIMD on 429, and the runner waiting instead of failing.

Time comes from FakeClock: schedules run without sleeping, and the waits the
limiter asked for are checked exactly.
"""

import random

import pytest

from faust_inference import ModelSettings, RateLimited, Usage
from faust_inference.config import RateLimitSettings
from faust_inference.core.limits import RateLimiter, TokenBucket
from faust_inference.core.runner import InferenceRunner
from tests.unit.fakes import FakeClock, FakeProvider


def test_bucket_lets_a_burst_through_then_spaces_callers():
    bucket = TokenBucket(rate=4, burst=2, now=10.0)
    waits = [bucket.reserve(10.0) for _ in range(5)]
    assert waits == [0.0, 0.0, 0.25, 0.5, 0.75]


def test_bucket_refills_while_idle_up_to_the_burst():
    bucket = TokenBucket(rate=1, burst=3, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve(100.0) == 0.0  # long idle: full again, but only 3 deep
    assert [bucket.reserve(100.0) for _ in range(3)] == [0.0, 0.0, 1.0]


def test_charged_cost_delays_later_callers():
    bucket = TokenBucket(rate=10, burst=10, now=0.0)
    assert bucket.reserve(0.0, 0) == 0.0
    bucket.charge(0.0, 30)  # 30 units used: 2 s of debt beyond the burst
    assert bucket.reserve(0.0, 0) == pytest.approx(2.1)


def test_requests_per_minute_is_the_stricter_limit():
    clock = FakeClock()
    limiter = RateLimiter(
        RateLimitSettings(requests_per_second=10, requests_per_minute=60, burst=1), clock
    )
    assert limiter.rate == 1.0
    assert [limiter.reserve() for _ in range(3)] == [0.0, 1.0, 2.0]


def test_429_cuts_the_rate_once_per_burst_and_honours_retry_after():
    clock = FakeClock()
    changes: list[float] = []
    settings = RateLimitSettings(requests_per_second=100, decrease=0.5, increase=0.1)
    limiter = RateLimiter(settings, clock, on_change=changes.append)
    limiter.reserve()
    sent = clock.monotonic()
    clock.now = 1.0
    assert limiter.throttled(sent, retry_after=2.0) == 2.0
    # Answers to requests sent before the cut do not cut again.
    limiter.throttled(sent, retry_after=None)
    assert limiter.rate == 50.0 and changes == [50.0]
    # Nobody goes before Retry-After, and after it the rate holds: no burst.
    assert limiter.reserve() == pytest.approx(2.0)
    assert limiter.reserve() == pytest.approx(2.02)
    # A 429 to a request sent after the cut cuts again.
    limiter.throttled(clock.monotonic(), retry_after=None)
    assert limiter.rate == 25.0


def test_the_rate_recovers_additively_up_to_the_configured_one():
    clock = FakeClock()
    settings = RateLimitSettings(requests_per_second=100, decrease=0.5, increase=0.1)
    limiter = RateLimiter(settings, clock)
    limiter.reserve()
    limiter.throttled(0.0, retry_after=None)
    assert limiter.rate == 50.0
    clock.now = 2.0  # 10% of the pre-cut rate per second: +20
    limiter.reserve()
    assert limiter.rate == pytest.approx(70.0)
    clock.now = 100.0
    limiter.reserve()
    assert limiter.rate == 100.0


def test_without_a_configured_rate_the_first_429_sets_one_from_the_observed_rate():
    clock = FakeClock()
    limiter = RateLimiter(RateLimitSettings(decrease=0.5), clock)
    for i in range(21):  # 20 requests/s
        clock.now = i * 0.05
        assert limiter.reserve() == 0.0
    assert limiter.rate is None
    limiter.throttled(clock.now, retry_after=None)
    assert limiter.rate == pytest.approx(10.0)


def test_tokens_per_minute_waits_for_the_tokens_used():
    clock = FakeClock()
    limiter = RateLimiter(RateLimitSettings(tokens_per_minute=600), clock)
    assert limiter.reserve() == 0.0
    limiter.charge(Usage(1000, 199))  # twice the minute's budget, plus one token
    assert limiter.reserve() == pytest.approx(60.0)


def make_runner(provider, clock, **settings):
    settings.setdefault("batch_timeout", 0.0)
    s = ModelSettings(name="m", provider="fake", **settings)
    return InferenceRunner(provider, s, clock=clock, rng=random.Random(0))


async def test_runner_paces_requests_at_the_rate_limit():
    clock = FakeClock()
    provider = FakeProvider()
    runner = make_runner(provider, clock, rate_limit={"requests_per_second": 20, "burst": 1})
    await runner.predict_many(range(10))
    assert len(provider.batches) == 10
    assert clock.now == pytest.approx(9 / 20)  # nine waits of 1/20 s
    await runner.aclose()


async def test_rate_limited_calls_wait_and_never_fail():
    clock = FakeClock()
    provider = FakeProvider()
    provider.script.extend(RateLimited("slow down", retry_after=3.0) for _ in range(6))
    runner = make_runner(provider, clock, retries=1, rate_limit=50)
    outcome = await runner.submit(4)
    assert outcome.output == 8 and outcome.attempts == 7  # retries=1, yet 7 attempts
    assert clock.now >= 6 * 3.0  # every Retry-After waited out
    assert runner.limiter is not None and runner.limiter.rate < 50
    await runner.aclose()


def test_settings_take_shorthands_and_reject_nonsense():
    from pydantic import ValidationError

    s = ModelSettings(name="m", provider="fake", rate_limit=25, circuit_breaker=True)
    assert s.rate_limit is not None and s.rate_limit.per_second == 25.0
    assert s.circuit_breaker is not None and s.circuit_breaker.failures == 5
    for bad in ({"requests_per_second": 0}, {"request_per_second": 5}, {"decrease": 1.5}):
        with pytest.raises(ValidationError):
            ModelSettings(name="m", provider="fake", rate_limit=bad)
    with pytest.raises(ValidationError):
        ModelSettings(name="m", provider="fake", circuit_breaker={"on_open": "drop"})
