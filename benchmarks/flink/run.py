"""Flink SQL ``ML_PREDICT`` and faust-inference, side by side, repeated.

    .venv/bin/python benchmarks/flink/run.py [--smoke] [--repeat 3] [--lock /work/bench.lock]
                                             [--label after]

Both systems read the same events from Kafka, call an OpenAI-compatible endpoint
and write their results to Kafka, on the same broker and machine:

* Flink 2.3 (PyFlink's local mini-cluster, parallelism 1, checkpoints every
  second, at-least-once into Kafka): ``job.py``, ``ML_PREDICT`` with the
  ``openai`` provider, ``async`` and ``max-concurrent-operations`` = the cap;
* faust-inference (one Faust worker, commits every second): ``faust_app.py``,
  ``@infer`` with ``max_concurrency`` = the cap; embeddings in batches of up to
  16 (Flink's provider sends one row per request), chat one per request.

Each system has its own fixed-latency test double (``devtools.fake_endpoint``,
a process each, so its counters are that system's) at 20 ms and 100 ms; caps 10
and 50 (and 5 at 20 ms: Flink's effective cap); tasks embedding and chat. Per
setting both systems are started, each on its own pair of topics (4 partitions
in, 1 out), and:

1. **warm-up**: events to both, until all came out (start-up, JIT, connections);
2. **events/s**: a burst to Flink alone, then one to ours alone (the other one
   idles), the output rate over the middle 80% of arrivals;
3. **p50/p99 latency**: ``paced_events`` (2,000) events paced at half Flink's
   burst rate in this setting, to **both systems at once**: one producer writes
   each event to both input topics at the same moment (the order of the two
   copies alternating), and a reader per output topic takes the result's
   arrival minus the producer's timestamp in the event;
4. **requests**, **peak in flight** (each system's endpoint's counters), **CPU s**
   (the system's processes, over its own burst and the paced phase) and **peak
   MB** (the highest RSS of its processes, sampled throughout).

Why the paced phase runs both systems together: its p99 is the 20th worst of
2,000 events, so it needs 2,000 events per system and setting, which at 100 ms
(Flink's burst about 49/s, paced at about 25/s) is 80 s. One after the other,
ten settings would take about 27 minutes a run; together about 13. Running them
together also puts both under the same load from the rest of the machine at the
same moments (the shared 2-core box's load is what moved earlier p99s 2-3x).
The cost: each system's latency includes the other's CPU, and Flink's is the
larger (in the paced phase 0.3-0.5 of a core against ours' 0.15-0.35, measured
on a loaded box), so the bias, if any, is against ours. Pacing stays at half
Flink's rate rather than higher: Flink has 5 requests in flight whatever its
cap, so at 100 ms it saturates near 50/s, and queueing at a higher fraction
would inflate Flink's tail, not measure it.

``--repeat N`` runs the whole comparison N times, each on a fresh broker; with
``--lock PATH`` each repeat holds ``flock(PATH)`` for itself only (other
benchmarks get a turn between repeats). The summary gives, per setting, the
median of each measure over the runs with its spread (min-max), the ours/Flink
p99 ratio of every run, and a verdict line, "p99 lower in k of N runs".

A full repeat takes 13-17 minutes (812-999 s measured); ``--smoke`` (one setting, a few hundred
events, one repeat) under 2 and fails when a system loses events, for CI. The
tables are printed and, unless ``--smoke`` or a partial run, the summary is
appended to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
from benchmarks.flink.systems import FlinkJob, Profiler, faust_worker  # noqa: E402 (after the re-exec)
from benchmarks.flink.traffic import OutputReader, Producer, endpoint_stats  # noqa: E402 (after the re-exec)
from benchmarks.support import fake_endpoint, rate, unique  # noqa: E402 (after the re-exec)
from devtools.kafka import KafkaBroker  # noqa: E402 (after the re-exec)

RESULTS = Path(__file__).resolve().parents[1] / "RESULTS.md"
OUR_BATCH = {"embedding": 16, "chat": 1}
SYSTEMS = ("flink", "faust")
PACED_FRACTION = 0.5  # of Flink's burst rate: unsaturated, see the module docstring


@dataclass(frozen=True)
class Plan:
    """How many events each phase sends."""

    warmup: int
    burst_max: int
    burst_latencies: float  # a burst is this many endpoint latencies' worth of events
    paced_events: int

    def burst(self, latency: float) -> int:
        """Events in the burst: about 8 s of Flink's pace (5 requests in flight)."""
        return min(self.burst_max, int(self.burst_latencies / max(latency, 1e-3)))


FULL = Plan(warmup=50, burst_max=2000, burst_latencies=40, paced_events=2000)
SMOKE = Plan(warmup=20, burst_max=300, burst_latencies=6, paced_events=200)


@dataclass(frozen=True)
class Setting:
    task: str
    latency: float
    in_flight: int


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

    def run(
        self, systems: tuple[str, ...], s: Setting, urls: dict[str, str], paced_rate: float | None
    ) -> list[report.Measured]:
        """Start ``systems``, measure them (see the module docstring), stop them."""
        sides: list[Side] = []
        profiler = None
        with contextlib.ExitStack() as stack:
            for system in sorted(systems):  # faust first: it starts while Flink's job does
                side = self._start(system, s, urls[system], stack)
                sides.append(side)
                if self.profile is not None and system == "faust":
                    profiler = Profiler(side.pgid, self.profile / f"{side.log.stem}.txt")
                    stack.callback(profiler.stop)
            sides.sort(key=lambda side: SYSTEMS.index(side.system))  # Flink's burst first
            out = asyncio.run(self._measure(s, sides, paced_rate, profiler))
        latencies, stages, pace, complete = out
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
            await producer.burst(topics, warm)
            complete = {
                side.system: await readers[side.system].wait_for(warm, timeout=180)
                for side in sides
            }

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


def parse_setting(text: str) -> Setting:
    """``embedding:20:10`` -> task, endpoint latency in ms, in-flight cap."""
    task, latency_ms, cap = text.split(":")
    if task not in OUR_BATCH:
        raise argparse.ArgumentTypeError(f"task must be one of {sorted(OUR_BATCH)}")
    return Setting(task, int(latency_ms) / 1000, int(cap))


def settings(smoke: bool) -> list[Setting]:
    """Every combination for the full run; one for the smoke run.

    Cap 5 at 20 ms too: Flink's provider never has more than 5 requests in flight
    (OkHttp's default per host), so this is the comparison at equal *effective* caps.
    """
    if smoke:
        return [Setting("embedding", 0.02, 10)]
    return [
        Setting(task, latency, cap)
        for latency in (0.02, 0.1)
        for task in ("embedding", "chat")
        for cap in ((5, 10, 50) if latency == 0.02 else (10, 50))
    ]


@contextlib.contextmanager
def held(lock: Path | None) -> Iterator[None]:
    """Hold ``flock(lock)`` (the same lock as ``flock(1)``'s) for the block; no-op for None."""
    if lock is None:
        yield
        return
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Repeat:
    """One run of every chosen setting: its rows and the machine's load around it."""

    rows: list[report.Measured]
    load_before: str
    load_after: str
    seconds: float
    kafka: str


def run_once(args: argparse.Namespace, chosen: list[Setting], plan: Plan, n: int) -> Repeat:
    """One repeat: a fresh broker, every setting, both systems (or ``--only``)."""
    systems = SYSTEMS if args.only is None else (args.only,)
    workdir = Path(tempfile.mkdtemp(prefix=f"flink-bench-{n}-"))
    started, load_before = time.monotonic(), report.uptime()
    rows: list[report.Measured] = []
    with KafkaBroker() as kafka, contextlib.ExitStack() as endpoints:
        bench = Bench(kafka, plan, workdir, args.profile, args.flink_parallelism)
        print(f"run {n}: Kafka {kafka.version}; logs in {workdir}; {load_before}", flush=True)
        for latency in sorted({s.latency for s in chosen}):
            # One endpoint per system, so that each one's counters are its own.
            urls = {system: endpoints.enter_context(fake_endpoint(latency)) for system in systems}
            for s in (s for s in chosen if s.latency == latency):
                measured = bench.run(systems, s, urls, args.paced_rate)
                rows.extend(measured)
                print(
                    f"  {s.task} {latency * 1000:g} ms x{s.in_flight}: "
                    + ", ".join(
                        f"{m.system} {m.events_per_s:,.0f}/s p99 {m.p99_ms:.1f} ms"
                        for m in measured
                    )
                    + f" (paced {measured[0].paced_rate:.0f}/s; "
                    f"{time.monotonic() - started:.0f} s)",
                    flush=True,
                )
        version = kafka.version
    return Repeat(rows, load_before, report.uptime(), time.monotonic() - started, version)


def main() -> int:
    """Run every setting ``--repeat`` times, print the tables, append the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one setting, a few hundred events")
    parser.add_argument("--repeat", type=int, default=1, help="whole comparisons (default 1)")
    parser.add_argument(
        "--lock",
        type=Path,
        help="hold flock(LOCK) during each repeat, released between them (/work/bench.lock)",
    )
    parser.add_argument("--label", default="", help="names the run in RESULTS.md ('before', ...)")
    parser.add_argument("--no-write", action="store_true", help="print only")
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
        help="events/s of the latency phase (default: half Flink's burst rate, "
        "or half our own with --only faust)",
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
        with held(args.lock):
            repeats.append(run_once(args, chosen, plan, n))
        print("\n" + report.render(repeats[-1].rows), flush=True)
    runs = [r.rows for r in repeats]
    text = "\n".join(
        [
            f"Machine: {report.machine()}",
            *(
                f"Run {n}: {r.seconds:.0f} s, Kafka {r.kafka}; load before `{r.load_before}`; "
                f"after `{r.load_after}`"
                for n, r in enumerate(repeats, 1)
            ),
            f"Flink 2.3.0 (flink-model-openai 2.3.0, Kafka connector 5.0.0-2.2), "
            f"parallelism {args.flink_parallelism}; "
            f"events per setting and run: {plan.warmup} warm-up, a burst of "
            f"{plan.burst(0.02)} (20 ms) or {plan.burst(0.1)} (100 ms) to each system alone, "
            f"then {plan.paced_events} paced at {PACED_FRACTION:g} x Flink's burst rate to both "
            "at once. Cells: median (min-max) over the runs; the ratio row's p99 is each "
            "run's ours/Flink.",
            "",
            report.summarize(runs),
            "",
            *report.verdicts(runs),
        ]
    )
    print("\n" + text)
    partial = args.only or args.setting or args.profile or args.flink_parallelism != 1
    if not (args.smoke or args.no_write or partial):
        label = f" ({args.label})" if args.label else ""
        title = f"## Flink SQL ML_PREDICT vs faust-inference, {len(runs)} runs{label}"
        with RESULTS.open("a") as out:
            if out.tell() == 0:
                out.write("# Benchmark results\n\nWritten by the benchmark scripts; newest last.\n")
            out.write(f"\n{title}\n\n{text}\n")
    return 0 if all(m.complete for rows in runs for m in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
