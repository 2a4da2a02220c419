"""The DEBUG level Faust's start-up spinner leaves on the root logger is undone once it stops."""

import asyncio
import logging

from faust.utils.terminal.spinners import Spinner, SpinnerHandler

from faust_inference.logfilter import end_spinner_debug, end_spinner_debug_after_start


def worker_root(level=logging.WARNING):
    """A root logger as Faust's worker leaves it at ``-l warn`` (Worker._setup_spinner_handler)."""
    root = logging.Logger("root-under-test")
    console = logging.StreamHandler()
    console.setLevel(level)
    root.addHandler(console)
    spinner = Spinner()
    root.addHandler(SpinnerHandler(spinner, level=logging.DEBUG))
    root.setLevel(logging.DEBUG)
    return root, spinner


def test_nothing_changes_while_the_spinner_runs():
    root, _ = worker_root()
    assert not end_spinner_debug(root)
    assert root.level == logging.DEBUG and len(root.handlers) == 2


def test_a_stopped_spinner_is_removed_and_the_root_gets_the_l_level_back():
    root, spinner = worker_root()
    spinner.stop()
    assert end_spinner_debug(root)
    assert root.level == logging.WARNING
    assert [type(h) for h in root.handlers] == [logging.StreamHandler]
    assert not root.isEnabledFor(logging.DEBUG)


def test_a_handler_that_writes_debug_keeps_the_root_at_debug():
    root, spinner = worker_root()
    root.addHandler(logging.NullHandler())  # level NOTSET: writes everything
    spinner.stop()
    assert end_spinner_debug(root)
    assert root.level == logging.DEBUG


async def test_the_task_waits_for_the_spinner_to_stop():
    root, spinner = worker_root()
    task = asyncio.create_task(end_spinner_debug_after_start(wait=5.0, poll=0.01, root=root))
    await asyncio.sleep(0.05)
    assert root.level == logging.DEBUG
    spinner.stop()
    await asyncio.wait_for(task, 2.0)
    assert root.level == logging.WARNING


async def test_without_a_spinner_the_task_ends_at_once():
    root = logging.Logger("plain")
    root.setLevel(logging.DEBUG)
    await asyncio.wait_for(end_spinner_debug_after_start(wait=60.0, root=root), 1.0)
    assert root.level == logging.DEBUG
