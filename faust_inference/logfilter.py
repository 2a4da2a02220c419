"""One line per kind of connection error and interval, with a count, instead of thousands.

While the broker is away, aiokafka and Faust's transport log the same
connection error for every request they retry: a 15 s broker outage wrote
3,081 ERROR lines here, which buries the one line that matters.
:class:`RepeatCollapser` lets the first record of each kind through, counts
the repeats for ``interval`` seconds, and then says how many there were.

``install(app)`` adds it to the Kafka client's loggers
(``install(app, collapse_log_repeats=False)`` leaves logging alone); it can
be added to any logger::

    logging.getLogger("aiokafka.conn").addFilter(RepeatCollapser(interval=10))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

__all__ = [
    "KAFKA_LOGGERS",
    "RepeatCollapser",
    "collapse_repeats",
    "end_spinner_debug",
    "end_spinner_debug_after_start",
]

KAFKA_LOGGERS = (
    "aiokafka",
    "aiokafka.client",
    "aiokafka.cluster",
    "aiokafka.conn",
    "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
    "faust.transport.consumer",
    "faust.transport.producer",
    "faust.transport.drivers.aiokafka",
)
"""Loggers whose records the collapser sees (a filter only sees its own logger's records)."""


class RepeatCollapser(logging.Filter):
    """Passes the first WARNING-or-worse record of a kind per interval, counts the rest.

    A kind is the logger, the level and the message template (``record.msg``,
    before its arguments are filled in), so "connection to node 1 failed"
    and "connection to node 2 failed" logged from one template are one kind.
    When a record of a kind arrives after its interval ended with repeats
    counted, it goes out with ``(and N more like it in the last 10s)``.

    Example:
        >>> collapser = RepeatCollapser(interval=10.0)
        >>> logging.getLogger("aiokafka.conn").addFilter(collapser)

    Args:
        interval: seconds during which repeats of a kind are only counted.
        clock: the time source (tests pass a fake).
    """

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._windows: dict[tuple[str, int, object], list[float]] = {}
        """Per kind: [window start, repeats counted in it]."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` goes out (a repeat within the interval does not)."""
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, record.levelno, record.msg)
        now = self._clock()
        window = self._windows.get(kind)
        if window is None or now - window[0] >= self.interval:
            repeats = int(window[1]) if window is not None else 0
            self._windows[kind] = [now, 0]
            if repeats:
                more = f" (and {repeats} more like it in the last {self.interval:g}s)"
                record.msg = f"{record.msg}{more}"
            if len(self._windows) > 1000:  # a bound: kinds are few, but be sure
                self._windows.pop(next(iter(self._windows)))
            return True
        window[1] += 1
        return False


def collapse_repeats(
    interval: float = 10.0, loggers: Iterable[str] = KAFKA_LOGGERS
) -> RepeatCollapser:
    """Add one :class:`RepeatCollapser` to ``loggers`` (once) and return it."""
    collapser = RepeatCollapser(interval)
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatCollapser) for f in logger.filters):
            logger.addFilter(collapser)
    return collapser


def end_spinner_debug(root: logging.Logger | None = None) -> bool:
    """Give the root logger back the level ``-l`` asked for, once Faust's spinner stopped.

    At ``-l warn`` (a worker's default) Faust's start-up spinner sets the root
    logger to DEBUG and adds a handler that turns every record into a
    spinner tick. The spinner stops when the worker has started, but the
    DEBUG level stays: every ``logger.debug(...)`` in aiokafka, Faust and
    here then builds a record that nothing writes, 7-9% of a busy worker's
    time in a profile. This removes the stopped spinner's handler and raises
    the root level to the lowest of its remaining handlers' levels (the
    ``-l`` level), which drops only records no handler would have written.

    Returns:
        Whether it changed anything (False while the spinner still runs, or
        when there is none: ``-l info`` and below have no spinner).
    """
    from faust.utils.terminal.spinners import SpinnerHandler

    root = root or logging.getLogger()
    spinners = [h for h in root.handlers if isinstance(h, SpinnerHandler)]
    if not spinners or any(h.spinner is not None and not h.spinner.stopped for h in spinners):
        return False
    for handler in spinners:
        root.removeHandler(handler)
    levels = [h.level for h in root.handlers]
    if levels and root.level < min(levels):
        root.setLevel(min(levels))
    return True


async def end_spinner_debug_after_start(
    wait: float = 300.0, poll: float = 0.5, root: logging.Logger | None = None
) -> None:
    """Run :func:`end_spinner_debug` once the worker's spinner stops (an app task)."""
    from faust.utils.terminal.spinners import SpinnerHandler

    root = root or logging.getLogger()
    if not any(isinstance(h, SpinnerHandler) for h in root.handlers):
        return  # no spinner: nothing to undo
    for _ in range(int(wait / poll)):
        await asyncio.sleep(poll)
        if end_spinner_debug(root):
            return
