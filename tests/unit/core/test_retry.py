import random

import pytest

from faust_inference import ClientError, RateLimited, RetrySettings, ServerError, TransportError
from faust_inference.core.retry import RetryPolicy


def test_backoff_grows_exponentially_and_is_capped():
    policy = RetryPolicy(
        RetrySettings(initial_backoff=0.5, multiplier=3, max_backoff=5, jitter=0),
        rng=random.Random(1),
    )
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 5.0]


def test_jitter_stays_within_its_fraction():
    policy = RetryPolicy(RetrySettings(initial_backoff=1, jitter=0.5), rng=random.Random(7))
    waits = [policy.backoff(1) for _ in range(200)]
    assert min(waits) >= 0.5 and max(waits) <= 1.0
    assert len(set(waits)) > 100  # really random, not a constant


def test_retry_after_wins_when_longer_and_is_capped():
    policy = RetryPolicy(RetrySettings(initial_backoff=0.1, jitter=0, max_retry_after=3))
    assert policy.delay(RateLimited("slow down", retry_after=2.0), 1) == 2.0
    assert policy.delay(RateLimited("slow down", retry_after=30.0), 1) == 3.0
    assert policy.delay(ServerError("busy", status=503, retry_after=1.0), 1) == 1.0
    assert policy.delay(RateLimited("no header"), 1) == pytest.approx(0.1)


def test_only_retryable_errors_within_the_budget_are_retried():
    policy = RetryPolicy(RetrySettings(max_retries=2))
    assert policy.should_retry(TransportError("reset"), 1)
    assert policy.should_retry(ServerError("x", status=502), 2)
    assert not policy.should_retry(ServerError("x", status=502), 3)
    assert not policy.should_retry(ClientError("bad", status=400), 1)
