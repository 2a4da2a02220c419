"""The pure helpers of ``benchmarks/flink``: percentiles, /proc parsing, the table."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.flink.measure import (
    GroupMeter,
    group_pids,
    group_runqueue_wait,
    percentile,
    proc_cpu_seconds,
    proc_rss_bytes,
    schedstat_wait_seconds,
)
from benchmarks.flink.report import (
    Measured,
    median_spread,
    p99_ratios,
    ratio,
    render,
    summarize,
    targets,
    verdicts,
)
from benchmarks.flink.schedule import (
    FULL,
    SMOKE,
    Setting,
    held,
    paced_rate,
    parse_setting,
    settings,
    system_order,
)
from benchmarks.flink.traffic import OutputReader, copy_order, event_text

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([3.0, 1.0, 2.0], 50) == 2  # unsorted input
    assert percentile([7.0], 99) == 7
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 0)


def _stat(pid: int, comm: str, pgrp: int, utime: int, stime: int) -> str:
    # Fields after the command: state ppid pgrp session tty tpgid flags minflt
    # cminflt majflt cmajflt utime stime ...
    return f"{pid} ({comm}) S 1 {pgrp} {pgrp} 0 -1 0 0 0 0 0 {utime} {stime} 0 0 20 0 1 0\n"


def test_proc_stat_parsing_survives_a_command_with_spaces_and_parens() -> None:
    stat = _stat(42, "java (main) x", 40, utime=3 * TICKS, stime=TICKS)
    assert proc_cpu_seconds(stat) == pytest.approx(4.0)
    assert proc_rss_bytes("1000 250 30 4 0 50 0\n") == 250 * PAGE


def test_group_pids_reads_the_process_group(tmp_path: Path) -> None:
    for pid, pgrp in ((10, 10), (11, 10), (12, 99)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat(pid, "p", pgrp, 0, 0))
    (tmp_path / "self").mkdir()  # not a pid
    (tmp_path / "13").mkdir()  # exited: no stat
    assert sorted(group_pids(10, tmp_path)) == [10, 11]


def test_group_meter_sees_cpu_and_memory_of_a_real_process_group() -> None:
    busy = "import time\nx = bytearray(64 << 20)\nt = time.process_time()\n" + (
        "while time.process_time() - t < 0.3: pass\ntime.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", busy], start_new_session=True)
    try:
        meter = GroupMeter(proc.pid, interval=0.05).start()
        deadline = time.monotonic() + 10
        while meter.cpu_seconds() < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        meter.stop()
        assert meter.cpu_seconds() >= 0.3
        assert meter.peak_rss_bytes > 64 << 20
    finally:
        proc.kill()
        proc.wait()


def _row(
    system: str, events: float, p99: float, task: str = "embedding", complete: bool = True
) -> Measured:
    return Measured(task, 20, 10, system, events, p99 / 2, p99, 100, 5, 2.0, 100.0, 50.0, complete)


def test_render_puts_the_ratio_row_under_each_pair() -> None:
    rows = [_row("flink", 200, 100), _row("faust-inference", 800, 40)]
    table = render(rows).splitlines()
    assert table[0].startswith("| task | latency | in flight | system | events/s")
    assert len(table) == 5
    assert "| flink |" in table[2] and "| faust-inference |" in table[3]
    assert "**ours/Flink** | **4.00** | 0.40 | **0.40** |" in table[4]


def test_targets_need_double_speed_for_embeddings_and_a_lower_p99() -> None:
    met = targets([_row("flink", 200, 100), _row("faust-inference", 400, 99)])
    assert met[0].startswith("met")
    slow = targets([_row("flink", 200, 100), _row("faust-inference", 399, 50)])
    assert slow[0].startswith("MISSED")
    chat = targets([_row("flink", 200, 100, "chat"), _row("faust-inference", 200, 100, "chat")])
    assert chat[0].startswith("MISSED")  # equal p99 is not lower


def test_ratio_of_missing_values_is_nan() -> None:
    assert ratio(2, 4) == 0.5
    assert math.isnan(ratio(1, 0))
    assert math.isnan(ratio(math.nan, 1))


def test_event_texts_differ() -> None:
    texts = {event_text(i) for i in range(1000)}
    assert len(texts) == 1000


def test_copies_of_an_event_alternate_their_order() -> None:
    assert copy_order(["flink", "ours"], 4) == ["flink", "ours"]
    assert list(copy_order(["flink", "ours"], 7)) == ["ours", "flink"]
    assert list(copy_order(["only"], 3)) == ["only"]


def test_median_spread_gives_the_middle_and_the_range() -> None:
    assert median_spread([52.5, 40.0, 45.0], 1) == "45.0 (40.0-52.5)"
    assert median_spread([1_200.0, 900.0]) == "1,050 (900-1,200)"
    assert median_spread([7.0]) == "7"
    assert median_spread([math.nan, 3.0]) == "3"
    assert median_spread([]) == "n/a"


def _three_runs() -> list[list[Measured]]:
    # p99 ours/Flink per run: 0.5, 2.0, 0.8 (embedding); chat only in runs 1 and 2.
    return [
        [_row("flink", 200, 100), _row("faust-inference", 800, 50),
         _row("flink", 200, 100, "chat"), _row("faust-inference", 400, 90, "chat")],
        [_row("flink", 210, 40), _row("faust-inference", 900, 80),
         _row("flink", 200, 100, "chat"), _row("faust-inference", 400, 95, "chat", False)],
        [_row("flink", 190, 60), _row("faust-inference", 700, 48)],
    ]  # fmt: skip


def test_summary_has_medians_with_spread_and_every_runs_p99_ratio() -> None:
    runs = _three_runs()
    assert p99_ratios(runs, ("embedding", 20, 10)) == [0.5, 2.0, 0.8]
    lines = summarize(runs).splitlines()
    flink, ours, ratios = lines[2:5]
    assert "| flink | 200 (190-210) | 30.0 (20.0-50.0) | 60.0 (40.0-100.0) |" in flink
    assert "| faust-inference | 800 (700-900) | 25.0 (24.0-40.0) | 50.0 (48.0-80.0) |" in ours
    assert "**ours/Flink** | **4.00** | 0.83 | **0.50, 2.00, 0.80** |" in ratios
    assert "faust-inference (incomplete)" in lines[6]  # chat lost events in run 2
    assert len(lines) == 2 + 3 + 3


def test_verdicts_count_the_runs_with_a_lower_p99() -> None:
    assert verdicts(_three_runs()) == [
        "embedding 20 ms, 10 in flight: p99 lower in 2 of 3 runs (ours/Flink 0.50, 2.00, 0.80)",
        # run 2 is lower but lost events: it does not count
        "chat 20 ms, 10 in flight: p99 lower in 1 of 2 runs (ours/Flink 0.90, 0.95)",
    ]


def test_held_takes_the_same_lock_as_flock(tmp_path: Path) -> None:
    lock = tmp_path / "bench.lock"
    probe = [sys.executable, "-c", (
        "import fcntl, sys\n"
        f"f = open({str(lock)!r}, 'a')\n"
        "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n    sys.exit(3)\n"
    )]  # fmt: skip
    with held(lock):
        assert subprocess.run(probe).returncode == 3  # another process must wait
    assert subprocess.run(probe).returncode == 0  # released
    with held(None):
        pass


def test_stage_latencies_split_a_result_into_before_inference_and_after() -> None:
    reader = OutputReader("127.0.0.1:9", "unused")  # never started: no connection
    reader.received = {1: (10.050, 10.000), 2: (20.070, 20.000), 3: (30.1, 30.0)}
    reader.stages = {1: (10.040, 0.020), 2: (20.060, 0.030)}  # 3 carries no stamps (Flink)
    stages = reader.stage_latencies(range(1, 4))
    assert stages["before"] == pytest.approx([0.020, 0.030])
    assert stages["inference"] == pytest.approx([0.020, 0.030])
    assert stages["after"] == pytest.approx([0.010, 0.010])
    assert reader.latencies(range(1, 4)) == pytest.approx([0.050, 0.070, 0.1])


def test_runqueue_wait_sums_every_thread_of_the_group(tmp_path: Path) -> None:
    assert schedstat_wait_seconds("5000000 2500000000 17\n") == pytest.approx(2.5)
    for pid, pgrp, waits in ((10, 10, (1.0, 0.5)), (12, 99, (9.0,))):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat(pid, "p", pgrp, 0, 0))
        for tid, wait in enumerate(waits, pid):
            task = tmp_path / str(pid) / "task" / str(tid)
            task.mkdir(parents=True)
            (task / "schedstat").write_text(f"1 {int(wait * 1e9)} 3\n")
    assert group_runqueue_wait(10, tmp_path) == pytest.approx(1.5)


def test_order_alternates_per_setting_and_per_repeat() -> None:
    runs = [[system_order(i, n)[0] for i in range(10)] for n in (1, 2, 3)]
    assert runs[0][:4] == ["flink", "faust", "flink", "faust"]
    for n in range(2):  # the same setting flips from one repeat to the next
        assert all(a != b for a, b in zip(runs[n], runs[n + 1], strict=True))
    for i in range(10):  # both systems always take a turn, each once
        assert sorted(system_order(i, 1)) == ["faust", "flink"]
    assert system_order(3, 2, ("faust",)) == ("faust",)  # --only


def test_pace_is_half_flinks_rate_and_the_same_for_both_systems() -> None:
    assert paced_rate(0.02) == 100.0
    assert paced_rate(0.1) == 25.0
    # another latency: half of Flink's 5 in flight over latency + 5 ms
    assert paced_rate(0.045) == pytest.approx(50.0)
    assert paced_rate(0.2) < paced_rate(0.1)


def test_full_run_has_ten_settings_and_2000_paced_events() -> None:
    full = settings(smoke=False)
    assert len(full) == 10 and len(set(full)) == 10
    assert sum(s.latency == 0.02 for s in full) == 6
    assert {s.in_flight for s in full if s.latency == 0.1} == {10, 50}
    assert FULL.paced_events == 2000 and SMOKE.paced_events < FULL.paced_events
    assert settings(smoke=True) == [Setting("embedding", 0.02, 10)]
    assert (FULL.burst(0.02), FULL.burst(0.1)) == (2000, 400)


def test_parse_setting_names_the_fix() -> None:
    assert parse_setting("chat:100:50") == Setting("chat", 0.1, 50)
    with pytest.raises(argparse.ArgumentTypeError, match="task must be one of"):
        parse_setting("rerank:20:5")
    with pytest.raises(argparse.ArgumentTypeError, match="task:latency_ms:cap"):
        parse_setting("chat:20")


def test_each_system_runs_at_its_own_linger_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.flink.run import _linger_text

    for name in ("FLINK_BENCH_PRODUCER_LINGER", "FLINK_BENCH_FLINK_LINGER"):
        monkeypatch.delenv(name, raising=False)
    flink = ("FLINK_BENCH_FLINK_LINGER", "Kafka client", "FLINK_BENCH_PRODUCER_LINGER")
    assert _linger_text("FLINK_BENCH_PRODUCER_LINGER", "Faust") == "0 ms (Faust's default)"
    assert _linger_text(*flink) == "5 ms (Kafka client's default)"
    monkeypatch.setenv("FLINK_BENCH_PRODUCER_LINGER", "0.005")  # both at 5 ms
    assert _linger_text(*flink) == "5 ms (FLINK_BENCH_PRODUCER_LINGER)"
    monkeypatch.setenv("FLINK_BENCH_FLINK_LINGER", "0")  # Flink's alone
    assert _linger_text(*flink) == "0 ms (FLINK_BENCH_FLINK_LINGER)"
