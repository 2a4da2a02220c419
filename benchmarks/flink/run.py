"""Flink SQL ``ML_PREDICT`` and faust-inference, one after the other, repeated.

    .venv/bin/python benchmarks/flink/run.py [--smoke] [--repeat 3] [--lock /work/bench.lock]
                                             [--together] [--label after]

Both systems read the same kind of events from Kafka, call an OpenAI-compatible
endpoint and write their results to Kafka, on the same broker and machine:

* Flink 2.3 (PyFlink's local mini-cluster, parallelism 1, checkpoints every
  second, at-least-once into Kafka): ``job.py``, ``ML_PREDICT`` with the
  ``openai`` provider, ``async`` and ``max-concurrent-operations`` = the cap;
* faust-inference (one Faust worker, commits every second): ``faust_app.py``,
  ``@infer`` with ``max_concurrency`` = the cap; embeddings in batches of up to
  16 (Flink's provider sends one row per request), chat one per request.

Settings: a fixed-latency test double (``devtools.fake_endpoint``, its own
process, started for each system's turn so its counters are that system's) at
20 ms and 100 ms; caps 10 and 50 (and 5 at 20 ms: Flink's effective cap); tasks
embedding and chat. **Per setting each system takes its turn alone** (the
default design): it is started on its own pair of topics (4 partitions in, 1
out), measured, and stopped before the other one starts, so neither competes
with the other for the two cores. Each turn:

1. **warm-up**: 50 events, until all came out (start-up, JIT, connections);
2. **events/s**: a burst, the output rate over the middle 80% of arrivals;
3. **p50/p99 latency**: ``paced_events`` (2,000) events at a fixed pace, the
   same for both systems: 100/s at 20 ms, 25/s at 100 ms (half Flink's measured
   burst rate there; ``schedule.paced_rate`` says why fixed); a reader of the
   output topic takes the result's arrival minus the producer's timestamp in the
   event (one clock, one reader process, the same for both systems);
4. **requests**, **peak in flight** (the endpoint's counters), **CPU s** (the
   system's processes, over its burst and the paced phase) and **peak MB** (the
   highest RSS of its processes, sampled throughout).

Which system goes first alternates per setting and per repeat
(``schedule.system_order``), so that drift in the machine's load hits both. With
``--lock PATH`` each setting (both turns, a few minutes) holds ``flock(PATH)``,
released between settings so that other benchmarks get a turn; the broker's
start-up holds it too. ``uptime`` is printed before and after each repeat and
before each setting.

``--together`` is the earlier design, kept to compare: both systems started at
once, bursts one after the other (the other idling), then the paced events
written to both input topics at the same moment (the order of the two copies
alternating), at half Flink's burst rate of that setting. On two cores that
measured the two systems competing for the cores more than either one's latency
(docs/performance.md, "Against Flink SQL ``ML_PREDICT``").

Why 2,000 paced events: the p99 is then the 20th worst, not the 2nd or 3rd worst of
a few hundred, which moved 2-3x between runs. A full repeat measures for about 21
minutes (each 20 ms setting 74-90 s, each 100 ms one 192-213 s, both turns and
start-ups included); with other benchmarks taking turns at the lock it took 29-36
minutes on 2026-11-29. ``--together`` takes 13-17 minutes. ``--repeat N`` runs the whole
comparison N times, each on a fresh broker. The summary gives, per setting, the
median of each measure over the runs with its spread (min-max), the ours/Flink
p99 ratio of every run, and a verdict line, "p99 lower in k of N runs".

``--smoke`` (one setting, a few hundred events, one repeat; under 2 minutes) fails
when a system loses events, for CI. The tables are printed and, unless
``--smoke``, ``--no-write`` or a partial run (``--only``, ``--setting``,
``--profile``, ``--paced-rate``, ``--flink-parallelism``), the summary is appended
to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _in_project_venv() -> None:
    """Re-run under the project's virtualenv (made by scripts/venv.sh if missing).

    So that ``python benchmarks/flink/run.py`` works from a fresh clone with any
    Python 3.11, as the README says.
    """
    venv_python = REPO / ".venv" / "bin" / "python"
    if Path(sys.prefix).resolve() == (REPO / ".venv").resolve():
        return
    if not venv_python.exists():
        subprocess.run(["bash", str(REPO / "scripts" / "venv.sh")], check=True)
    os.execv(str(venv_python), [str(venv_python), *sys.argv])


if __name__ == "__main__":
    _in_project_venv()

sys.path.insert(0, str(REPO))

from benchmarks.flink import install, report  # noqa: E402 (after the re-exec)
from benchmarks.flink.bench import PACED_FRACTION, Bench  # noqa: E402 (after the re-exec)
from benchmarks.flink.schedule import (  # noqa: E402 (after the re-exec)
    FULL,
    SMOKE,
    SYSTEMS,
    Plan,
    Setting,
    held,
    paced_rate,
    parse_setting,
    settings,
    system_order,
)
from devtools.kafka import KafkaBroker  # noqa: E402 (after the re-exec)

RESULTS = Path(__file__).resolve().parents[1] / "RESULTS.md"


@dataclass
class Repeat:
    """One run of every chosen setting: its rows and the machine's load around it."""

    load_before: str
    rows: list[report.Measured] = field(default_factory=list)
    first: list[str] = field(default_factory=list)  # the system that went first, per setting
    load_after: str = ""
    seconds: float = 0.0
    kafka: str = ""


def _load(uptime: str) -> str:
    """The three load averages of an ``uptime`` line."""
    return uptime.rsplit("load average:", 1)[-1].strip()


def run_once(
    args: argparse.Namespace, chosen: list[Setting], plan: Plan, n: int, lock: Path | None
) -> Repeat:
    """One repeat: a fresh broker, every setting, each system alone (or ``--together``).

    The lock is held per setting (and for the broker's start-up), never for the
    whole repeat.
    """
    systems = SYSTEMS if args.only is None else (args.only,)
    workdir = Path(tempfile.mkdtemp(prefix=f"flink-bench-{n}-"))
    started = time.monotonic()
    repeat = Repeat(load_before=report.uptime())
    print(f"run {n}: logs in {workdir}; {repeat.load_before}", flush=True)
    with contextlib.ExitStack() as stack:
        asked = time.monotonic()
        with held(lock):
            got = time.monotonic()
            kafka = stack.enter_context(KafkaBroker())
        repeat.kafka = kafka.version
        print(
            f"  Kafka {kafka.version} up in {time.monotonic() - got:.0f} s "
            f"(lock wait {got - asked:.0f} s)",
            flush=True,
        )
        bench = Bench(kafka, plan, workdir, args.profile, args.flink_parallelism)
        for index, s in enumerate(chosen):
            order = system_order(index, n, systems)
            asked = time.monotonic()
            with held(lock):
                got = time.monotonic()
                load = _load(report.uptime())
                if args.together:
                    measured = bench.together(s, systems, args.paced_rate)
                else:
                    measured = bench.alone(s, order, args.paced_rate or paced_rate(s.latency))
            repeat.rows.extend(measured)
            first = "both at once" if args.together else f"{order[0]} first"
            repeat.first.append(first)
            print(
                f"  {s.task} {s.latency * 1000:g} ms x{s.in_flight}: "
                + ", ".join(
                    f"{m.system} {m.events_per_s:,.0f}/s p99 {m.p99_ms:.1f} ms" for m in measured
                )
                + f" (paced {measured[0].paced_rate:.0f}/s; {first}; load before {load}; "
                f"lock wait {got - asked:.0f} s, setting {time.monotonic() - got:.0f} s, "
                f"run so far {time.monotonic() - started:.0f} s)",
                flush=True,
            )
    repeat.load_after, repeat.seconds = report.uptime(), time.monotonic() - started
    print(f"run {n} done in {repeat.seconds:.0f} s; {repeat.load_after}", flush=True)
    return repeat


def _linger_text(*names_and_default: str) -> str:
    """'5 ms (the Kafka client's default)' or '0 ms (set)': the first variable set wins."""
    first, default, *more = names_and_default
    for name in (first, *more):
        value = os.environ.get(name)
        if value:
            return f"{float(value) * 1000:g} ms ({name})"
    ms = 0 if default == "Faust" else 5
    return f"{ms} ms ({default}'s default)"


def _design(args: argparse.Namespace, plan: Plan) -> str:
    """One paragraph for RESULTS.md: what was sent to whom."""
    common = (
        f"Flink 2.3.0 (flink-model-openai 2.3.0, Kafka connector 5.0.0-2.2), "
        f"parallelism {args.flink_parallelism}; events per setting and run: {plan.warmup} "
        f"warm-up, a burst of {plan.burst(0.02)} (20 ms) or {plan.burst(0.1)} (100 ms) "
    )
    if args.together:
        how = (
            f"to each system alone (the other idling), then {plan.paced_events} paced at "
            f"{PACED_FRACTION:g} x Flink's burst rate to both at once."
        )
    else:
        how = (
            f"and {plan.paced_events} paced at {paced_rate(0.02):g}/s (20 ms) or "
            f"{paced_rate(0.1):g}/s (100 ms), to each system alone (the other stopped), "
            "the order alternating per setting and run."
        )
    knobs = " ".join(
        f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("FLINK_BENCH_")
    )
    ours = _linger_text("FLINK_BENCH_PRODUCER_LINGER", "Faust")
    flink = _linger_text("FLINK_BENCH_FLINK_LINGER", "Kafka client", "FLINK_BENCH_PRODUCER_LINGER")
    return (
        common
        + how
        + f" Producer linger: ours {ours}, Flink's sink {flink}."
        + (f" Experiment knobs set: {knobs}." if knobs else "")
        + " Cells: median (min-max) over the runs; the ratio row's p99 is each run's ours/Flink."
    )


def main() -> int:
    """Run every setting ``--repeat`` times, print the tables, append the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one setting, a few hundred events")
    parser.add_argument("--repeat", type=int, default=1, help="whole comparisons (default 1)")
    parser.add_argument(
        "--lock",
        type=Path,
        help="hold flock(LOCK) during each setting, released between them (/work/bench.lock)",
    )
    parser.add_argument("--label", default="", help="names the run in RESULTS.md ('before', ...)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    design = parser.add_mutually_exclusive_group()
    design.add_argument(
        "--alone",
        dest="together",
        action="store_false",
        help="each system alone per setting, the order alternating (the default)",
    )
    design.add_argument(
        "--together",
        dest="together",
        action="store_true",
        help="the earlier design: both systems at once, paced at half Flink's burst rate",
    )
    parser.set_defaults(together=False)
    parser.add_argument(
        "--setting",
        type=parse_setting,
        action="append",
        help="only this setting, task:latency_ms:cap (repeatable), e.g. chat:20:50",
    )
    parser.add_argument("--only", choices=SYSTEMS, help="run one system only")
    parser.add_argument(
        "--flink-parallelism",
        type=int,
        default=1,
        help="Flink's parallelism (default 1; 4 shows that its 5 requests in flight stay 5)",
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        help="events/s of the latency phase (default: 100 at 20 ms, 25 at 100 ms; "
        "with --together half Flink's burst rate, or half our own with --only faust)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy our worker while measured; collapsed stacks into DIR",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    chosen = args.setting or settings(args.smoke)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    plan = SMOKE if args.smoke else FULL
    install.ensure_venv(), install.ensure_jars()  # outside the lock: not a measurement
    repeats: list[Repeat] = []
    for n in range(1, args.repeat + 1):
        repeats.append(run_once(args, chosen, plan, n, args.lock))
        print("\n" + report.render(repeats[-1].rows), flush=True)
    runs = [r.rows for r in repeats]
    text = "\n".join(
        [
            f"Machine: {report.machine()}",
            *(
                f"Run {n}: {r.seconds:.0f} s, Kafka {r.kafka}; load before `{r.load_before}`; "
                f"after `{r.load_after}`; per setting: {', '.join(r.first)}"
                for n, r in enumerate(repeats, 1)
            ),
            _design(args, plan),
            "",
            report.summarize(runs),
            "",
            *report.verdicts(runs),
        ]
    )
    print("\n" + text)
    partial = (
        args.only or args.setting or args.profile or args.paced_rate or args.flink_parallelism != 1
    )
    if not (args.smoke or args.no_write or partial):
        design_name = "both systems at once" if args.together else "each system alone"
        label = f" ({args.label})" if args.label else ""
        title = (
            f"## Flink SQL ML_PREDICT vs faust-inference, {len(runs)} runs, {design_name}{label}"
        )
        with RESULTS.open("a") as out:
            if out.tell() == 0:
                out.write("# Benchmark results\n\nWritten by the benchmark scripts; newest last.\n")
            out.write(f"\n{title}\n\n{text}\n")
    return 0 if all(m.complete for rows in runs for m in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
