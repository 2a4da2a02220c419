"""Request figures: p99 from mergeable buckets."""

import math
import random

from faust_inference.lifecycle.stats import BOUNDS, Figures


def test_p99_is_within_one_bucket_of_the_exact_quantile():
    rng = random.Random(5)
    latencies = [rng.lognormvariate(-4, 0.6) for _ in range(5000)]
    f = Figures()
    for x in latencies:
        f.record(x, error=False)
    exact = sorted(latencies)[int(0.99 * len(latencies)) - 1]
    assert exact <= f.p99_s <= exact * 1.1 + BOUNDS[0]


def test_figures_of_two_workers_add_up():
    a, b = Figures(), Figures()
    for i in range(100):
        (a if i % 2 else b).record(0.01 * (i % 10 + 1), error=i % 5 == 0)
    both = Figures.from_dict(a.as_dict()).merge(b)
    assert (both.requests, both.errors) == (100, 20)
    assert both.error_rate == 0.2 and not math.isnan(both.p99_s)
    assert math.isnan(Figures().p99_s)
