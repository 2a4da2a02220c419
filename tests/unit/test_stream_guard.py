"""The commit guard against Faust's one-offset head tolerance (``Consumer._new_offset``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable

from faust_inference.stream_guard import CommitGuard


class FaustLikeConsumer:
    """The two members the guard wraps, computing offsets as Faust 0.15.3 does."""

    def __init__(self, committed: int) -> None:
        self._acked: defaultdict[str, list[int]] = defaultdict(list)
        self.committed = committed

    def _new_offset(self, tp: str) -> int | None:
        acked = sorted(self._acked[tp])
        if not acked or min(acked) - self.committed > 1:  # Faust's tolerance
            return None
        run = [acked[0]]
        for offset in acked[1:]:
            if offset != run[-1] + 1:
                break
            run.append(offset)
        return run[-1] + 1


class Pipeline:
    def __init__(self, open_offsets: dict[Hashable, int]) -> None:
        self.open_offsets = open_offsets

    def oldest_open(self, lane: Hashable) -> int | None:
        return self.open_offsets.get(lane)


def test_faust_alone_commits_past_an_unfinished_event_at_the_committed_offset() -> None:
    consumer = FaustLikeConsumer(committed=124)
    consumer._acked["tp"] = [125, 126]  # 124 is still in flight
    assert consumer._new_offset("tp") == 127  # what lost offset 124 in issue 11


def test_the_guard_refuses_that_commit_and_allows_it_once_the_event_is_done() -> None:
    consumer = FaustLikeConsumer(committed=124)
    guard = CommitGuard.install(consumer)
    assert guard is not None and CommitGuard.install(consumer) is guard
    pipeline = Pipeline({"tp": 124})
    guard.watch(pipeline)
    consumer._acked["tp"] = [125, 126]
    assert consumer._new_offset("tp") is None
    pipeline.open_offsets.clear()
    consumer._acked["tp"].append(124)
    assert consumer._new_offset("tp") == 127


def test_the_guard_leaves_a_run_before_the_open_event_alone() -> None:
    consumer = FaustLikeConsumer(committed=120)
    guard = CommitGuard.install(consumer)
    assert guard is not None
    guard.watch(Pipeline({"tp": 124}))
    consumer._acked["tp"] = [120, 121, 122, 123, 125]
    assert consumer._new_offset("tp") == 124
    assert consumer._new_offset("other") is None  # nothing acked there
