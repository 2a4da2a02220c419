import logging

from faust_inference.logfilter import RepeatCollapser, collapse_repeats


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("aiokafka.conn", level, __file__, 1, msg, args, None)


def test_repeats_are_counted_and_reported_with_the_next_one_after_the_interval() -> None:
    clock = Clock()
    collapser = RepeatCollapser(interval=10.0, clock=clock)
    assert collapser.filter(record("connect to %s failed", "node 1"))
    passed = [collapser.filter(record("connect to %s failed", f"node {i}")) for i in range(500)]
    assert not any(passed)
    assert collapser.filter(record("another kind of error"))
    clock.now = 10.5
    later = record("connect to %s failed", "node 3")
    assert collapser.filter(later)
    assert later.getMessage() == ("connect to node 3 failed (and 500 more like it in the last 10s)")
    assert collapser.filter(record("connect to %s failed", "x", level=logging.INFO))


def test_collapse_repeats_adds_one_filter_per_logger_once() -> None:
    first = collapse_repeats(5.0, ["faust_inference.test.a"])
    collapse_repeats(5.0, ["faust_inference.test.a"])
    filters = logging.getLogger("faust_inference.test.a").filters
    assert filters == [first]
