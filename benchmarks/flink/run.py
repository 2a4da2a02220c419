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
a few hundred, which moved 2-3x between runs. A full repeat alone takes about
20 ms 6 x 2 x (20 s paced + burst + start-up) + 100 ms 4 x 2 x (80 s paced + ...),
about 25 minutes; ``--together`` about 13-17. ``--repeat N`` runs the whole
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
import asyncio
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

import orjson  # noqa: E402 (after the re-exec)

from benchmarks.flink import install, report  # noqa: E402 (after the re-exec)
from benchmarks.flink.measure import GroupMeter, group_runqueue_wait, percentile  # noqa: E402 (after the re-exec)
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
from benchmarks.flink.systems import FlinkJob, Profiler, faust_worker  # noqa: E402 (after the re-exec)
from benchmarks.flink.traffic import OutputReader, Producer, endpoint_stats  # noqa: E402 (after the re-exec)
from benchmarks.support import fake_endpoint, rate, unique  # noqa: E402 (after the re-exec)
from devtools.kafka import KafkaBroker  # noqa: E402 (after the re-exec)

RESULTS = Path(__file__).resolve().parents[1] / "RESULTS.md"
OUR_BATCH = {"embedding": 16, "chat": 1}
PACED_FRACTION = 0.5  # --together: of Flink's burst rate in the setting (unsaturated)


@dataclass
class Side:
    """One system under test in one setting: its topics, endpoint, process and meter."""

    system: str
    topic_in: str
    topic_out: str
    url: str
    pgid: int
    meter: GroupMeter
    log: Path
    events_per_s: float = 0.0
    cpu_s: float = 0.0
    paced_cpu_s: float = 0.0
    paced_wait_s: float = 0.0  # run-queue wait of its threads in the paced phase
    warmup_s: float = 0.0  # from the warm-up's first send to its last result


class Bench:
    """One broker and the installed Flink side; runs one setting for the chosen systems."""

    def __init__(
        self,
        kafka: KafkaBroker,
        plan: Plan,
        workdir: Path,
        profile: Path | None = None,
        flink_parallelism: int = 1,
    ) -> None:
        self.kafka, self.plan, self.workdir, self.profile = kafka, plan, workdir, profile
        self.flink_parallelism = flink_parallelism
        self.venv, self.jars = install.ensure_venv(), install.ensure_jars()

    def alone(self, s: Setting, order: tuple[str, ...], pace: float) -> list[report.Measured]:
        """Each system of ``order`` in turn, alone: its own endpoint, started and stopped."""
        rows: list[report.Measured] = []
        for system in order:
            with fake_endpoint(s.latency) as url:
                rows.extend(self.run((system,), s, {system: url}, pace))
        return sorted(rows, key=lambda m: m.system != "flink")  # Flink's row first

    def together(
        self, s: Setting, systems: tuple[str, ...], pace: float | None
    ) -> list[report.Measured]:
        """Both systems started at once, paced together (the ``--together`` design)."""
        with contextlib.ExitStack() as endpoints:
            # One endpoint per system, so that each one's counters are its own.
            urls = {system: endpoints.enter_context(fake_endpoint(s.latency)) for system in systems}
            return self.run(systems, s, urls, pace)

    def run(
        self, systems: tuple[str, ...], s: Setting, urls: dict[str, str], paced_rate: float | None
    ) -> list[report.Measured]:
        """Start ``systems``, measure them (see the module docstring), stop them."""
        sides: list[Side] = []
        profiler = None
        began = time.monotonic()
        with contextlib.ExitStack() as stack:
            for system in sorted(systems):  # faust first: it starts while Flink's job does
                side = self._start(system, s, urls[system], stack)
                sides.append(side)
                if self.profile is not None and system == "faust":
                    profiler = Profiler(side.pgid, self.profile / f"{side.log.stem}.txt")
                    stack.callback(profiler.stop)
            sides.sort(key=lambda side: SYSTEMS.index(side.system))  # Flink's burst first
            started = time.monotonic()
            out = asyncio.run(self._measure(s, sides, paced_rate, profiler))
            measured = time.monotonic()
        latencies, stages, pace, complete = out
        print(
            f"    {'+'.join(side.system for side in sides)}: start-up {started - began:.0f} s, "
            f"warm-up {', '.join(f'{side.warmup_s:.0f}' for side in sides)} s, "
            f"measured {measured - started:.0f} s, stop {time.monotonic() - measured:.0f} s",
            flush=True,
        )
        self._record(s, latencies, stages)
        print(
            "    paced phase, CPU s / run-queue wait s (per CPU s): "
            + "; ".join(
                f"{side.system} {side.paced_cpu_s:.1f} / {side.paced_wait_s:.1f} "
                f"({side.paced_wait_s / max(side.paced_cpu_s, 1e-9):.2f})"
                for side in sides
            ),
            flush=True,
        )
        rows = []
        for side in sides:
            stats = endpoint_stats(side.url)
            if not complete[side.system]:
                print(f"  {side.system}: not every event came out; see {side.log}", flush=True)
            rows.append(
                report.Measured(
                    task=s.task,
                    latency_ms=int(s.latency * 1000),
                    in_flight=s.in_flight,
                    system="flink" if side.system == "flink" else "faust-inference",
                    events_per_s=side.events_per_s,
                    p50_ms=percentile(latencies[side.system], 50) * 1000,
                    p99_ms=percentile(latencies[side.system], 99) * 1000,
                    requests=int(stats["total"]),  # type: ignore[call-overload]
                    peak_in_flight=int(stats["peak_in_flight"]),  # type: ignore[call-overload]
                    cpu_s=side.cpu_s,
                    peak_mb=side.meter.peak_rss_bytes / 2**20,
                    paced_rate=pace,
                    complete=complete[side.system],
                )
            )
        return rows

    def _record(
        self,
        s: Setting,
        latencies: dict[str, list[float]],
        stages: dict[str, dict[str, list[float]]],
    ) -> None:
        """Keep the paced latencies in the log folder; print our stages' p50/p99."""
        name = f"latencies-{s.task}-{int(s.latency * 1000)}ms-{s.in_flight}-{unique('r')[-4:]}"
        dump = {"latencies": latencies, "stages": stages}
        (self.workdir / f"{name}.json").write_bytes(orjson.dumps(dump))
        for system, parts in stages.items():
            if parts["before"]:
                print(
                    f"    {system} stages p50/p99 ms: "
                    + "; ".join(
                        f"{stage} {percentile(v, 50) * 1000:.1f}/{percentile(v, 99) * 1000:.1f}"
                        for stage, v in parts.items()
                    ),
                    flush=True,
                )

    def _start(self, system: str, s: Setting, url: str, stack: contextlib.ExitStack) -> Side:
        topic_in, topic_out = unique(f"fb-{system}-in"), unique(f"fb-{system}-out")
        self.kafka.create_topic(topic_in, partitions=4)
        self.kafka.create_topic(topic_out, partitions=1)
        name = f"{system}-{s.task}-{int(s.latency * 1000)}ms-{s.in_flight}-{unique('r')[-4:]}"
        # The same job for both systems; only how each is started differs.
        work = {
            "source": topic_in,
            "sink": topic_out,
            "endpoint": f"{url}/v1",
            "task": s.task,
            "in_flight": s.in_flight,
        }
        if system == "flink":
            log = self.workdir / f"{name}.log"
            job = FlinkJob(
                self.venv,
                self.jars,
                log,
                bootstrap=self.kafka.bootstrap,
                parallelism=self.flink_parallelism,
                **work,
            )
            stack.callback(job.stop)
            pgid = job.start().pgid
        else:
            worker = faust_worker(
                self.workdir,
                name,
                kafka_broker=self.kafka.url,
                batch=OUR_BATCH[s.task],
                app_id=unique("fb"),
                **work,
            )
            stack.callback(worker.stop)
            worker.start()
            assert worker.pid is not None
            pgid, log = worker.pid, worker.log_path
        meter = GroupMeter(pgid).start()
        stack.callback(meter.stop)
        return Side(system, topic_in, topic_out, url, pgid, meter, log)

    async def _measure(
        self, s: Setting, sides: list[Side], paced_rate: float | None, profiler: Profiler | None
    ) -> tuple[dict[str, list[float]], dict[str, dict[str, list[float]]], float, dict[str, bool]]:
        plan, bootstrap = self.plan, self.kafka.bootstrap
        async with contextlib.AsyncExitStack() as stack:
            readers = {
                side.system: await stack.enter_async_context(
                    OutputReader(bootstrap, side.topic_out)
                )
                for side in sides
            }
            producer = await stack.enter_async_context(Producer(bootstrap))
            topics = [side.topic_in for side in sides]

            warm = range(plan.warmup)
            began = time.monotonic()
            await producer.burst(topics, warm)
            complete = {}
            for side in sides:
                complete[side.system] = await readers[side.system].wait_for(warm, timeout=180)
                side.warmup_s = time.monotonic() - began

            burst = range(warm.stop, warm.stop + plan.burst(s.latency))
            cpu_before: dict[str, float] = {}
            for side in sides:  # one system at a time; the other idles
                endpoint_stats(side.url, reset=True)
                before = side.meter.cpu_seconds()
                if profiler is not None and side.system == "faust":
                    profiler.start()
                await producer.burst([side.topic_in], burst)
                reader = readers[side.system]
                timeout = 30 + len(burst) * s.latency
                complete[side.system] &= await reader.wait_for(burst, timeout=timeout)
                side.events_per_s = rate(reader.arrivals_ms(burst))
                side.cpu_s = side.meter.cpu_seconds() - before

            flink = next((side for side in sides if side.system == "flink"), sides[0])
            pace = paced_rate or flink.events_per_s * PACED_FRACTION
            paced = range(burst.stop, burst.stop + plan.paced_events)
            wait_before = {}
            for side in sides:
                cpu_before[side.system] = side.meter.cpu_seconds()
                wait_before[side.system] = group_runqueue_wait(side.pgid)
            await producer.paced(topics, paced, pace)
            latencies, stages = {}, {}
            for side in sides:
                reader = readers[side.system]
                # Bounded: the paced events left over len/pace seconds already.
                complete[side.system] &= await reader.wait_for(paced, timeout=30)
                complete[side.system] &= reader.bad == 0
                side.paced_cpu_s = side.meter.cpu_seconds() - cpu_before[side.system]
                side.paced_wait_s = group_runqueue_wait(side.pgid) - wait_before[side.system]
                side.cpu_s += side.paced_cpu_s
                latencies[side.system] = reader.latencies(paced)
                stages[side.system] = reader.stage_latencies(paced)
            return latencies, stages, pace, complete


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
    return (
        common
        + how
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
