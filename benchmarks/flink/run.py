"""Flink SQL ``ML_PREDICT`` and faust-inference, side by side, in one run.

    .venv/bin/python benchmarks/flink/run.py [--smoke] [--label before]

Both systems read the same events from Kafka, call the same OpenAI-compatible
endpoint and write their results to Kafka, on the same broker and machine:

* Flink 2.3 (PyFlink's local mini-cluster, parallelism 1, checkpoints every
  second, at-least-once into Kafka): ``job.py``, ``ML_PREDICT`` with the
  ``openai`` provider, ``async`` and ``max-concurrent-operations`` = the cap;
* faust-inference (one Faust worker, commits every second): ``faust_app.py``,
  ``@infer`` with ``max_concurrency`` = the cap; embeddings in batches of up to
  16 (Flink's provider sends one row per request), chat one per request.

The endpoint is the fixed-latency test double (``devtools.fake_endpoint``, its
own process) at 20 ms and 100 ms; caps 10 and 50 (and 5 at 20 ms: Flink's
effective cap); tasks embedding and chat.
For each setting and system, in a fresh pair of topics (4 partitions in, 1 out):

1. warm-up events, until all came out (start-up, JIT, connections);
2. **events/s**: a burst of events, the output rate over the middle 80% of
   arrivals; **requests** and **peak in flight** are the endpoint's counters and
   **CPU s** the system's processes' CPU from here to the end of step 3;
3. **p50/p99 latency**: events paced at half Flink's burst rate in this setting
   (the same rate for both systems), from the producer's timestamp in the event
   to the result's arrival at the reader of the output topic;
4. **peak MB**: the highest RSS of the system's processes, sampled throughout.

The full run takes about 8 minutes; ``--smoke`` (one setting, a few hundred
events) under 2 and fails when a system loses events, for CI. The table is
printed and, unless ``--smoke``, appended to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
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

from benchmarks.flink import install, report  # noqa: E402 (after the re-exec)
from benchmarks.flink.measure import GroupMeter, percentile  # noqa: E402 (after the re-exec)
from benchmarks.flink.systems import FlinkJob, Profiler, faust_worker  # noqa: E402 (after the re-exec)
from benchmarks.flink.traffic import OutputReader, Producer, endpoint_stats  # noqa: E402 (after the re-exec)
from benchmarks.support import fake_endpoint, rate, unique  # noqa: E402 (after the re-exec)
from devtools.kafka import KafkaBroker  # noqa: E402 (after the re-exec)

RESULTS = Path(__file__).resolve().parents[1] / "RESULTS.md"
OUR_BATCH = {"embedding": 16, "chat": 1}


@dataclass(frozen=True)
class Plan:
    """How many events each phase sends."""

    warmup: int
    burst_max: int
    burst_latencies: float  # a burst is this many endpoint latencies' worth of events
    paced_seconds: float
    paced_min: int

    def burst(self, latency: float) -> int:
        """Events in the burst: about 8 s of Flink's pace (5 requests in flight)."""
        return min(self.burst_max, int(self.burst_latencies / max(latency, 1e-3)))


FULL = Plan(warmup=50, burst_max=2000, burst_latencies=40, paced_seconds=5.0, paced_min=150)
SMOKE = Plan(warmup=20, burst_max=300, burst_latencies=6, paced_seconds=1.0, paced_min=100)


@dataclass(frozen=True)
class Setting:
    task: str
    latency: float
    in_flight: int


class Bench:
    """One broker and the installed Flink side; runs one system in one setting."""

    def __init__(
        self, kafka: KafkaBroker, plan: Plan, workdir: Path, profile: Path | None = None
    ) -> None:
        self.kafka, self.plan, self.workdir, self.profile = kafka, plan, workdir, profile
        self.venv, self.jars = install.ensure_venv(), install.ensure_jars()

    def run(self, system: str, s: Setting, url: str, paced_rate: float | None) -> report.Measured:
        """Start ``system``, measure it (see the module docstring), stop it."""
        topic_in, topic_out = unique(f"fb-{s.task}-in"), unique(f"fb-{s.task}-out")
        self.kafka.create_topic(topic_in, partitions=4)
        self.kafka.create_topic(topic_out, partitions=1)
        name = f"{system}-{s.task}-{int(s.latency * 1000)}ms-{s.in_flight}"
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
            job = FlinkJob(self.venv, self.jars, log, bootstrap=self.kafka.bootstrap, **work)
            pgid, stop = job.start().pgid, job.stop
        else:
            worker = faust_worker(
                self.workdir,
                name,
                kafka_broker=self.kafka.url,
                batch=OUR_BATCH[s.task],
                app_id=unique("fb"),
                **work,
            ).start()
            assert worker.pid is not None
            pgid, stop, log = worker.pid, worker.stop, worker.log_path
        meter = GroupMeter(pgid).start()
        profiler = None
        if self.profile is not None and system == "faust":
            profiler = Profiler(pgid, self.profile / f"{name}.txt")
        try:
            out = asyncio.run(
                self._measure(s, url, topic_in, topic_out, meter, paced_rate, profiler)
            )
        finally:
            if profiler is not None:
                profiler.stop()
            stop()
            meter.stop()
        events_per_s, latencies, cpu_s, stats, rate_used, complete = out
        if not complete:
            print(f"  {name}: not every event came out; see {log}", flush=True)
        return report.Measured(
            task=s.task,
            latency_ms=int(s.latency * 1000),
            in_flight=s.in_flight,
            system="flink" if system == "flink" else "faust-inference",
            events_per_s=events_per_s,
            p50_ms=percentile(latencies, 50) * 1000,
            p99_ms=percentile(latencies, 99) * 1000,
            requests=int(stats["total"]),  # type: ignore[call-overload]
            peak_in_flight=int(stats["peak_in_flight"]),  # type: ignore[call-overload]
            cpu_s=cpu_s,
            peak_mb=meter.peak_rss_bytes / 2**20,
            paced_rate=rate_used,
            complete=complete,
        )

    async def _measure(
        self,
        s: Setting,
        url: str,
        topic_in: str,
        topic_out: str,
        meter: GroupMeter,
        paced_rate: float | None,
        profiler: Profiler | None,
    ) -> tuple[float, list[float], float, dict[str, object], float, bool]:
        plan, bootstrap = self.plan, self.kafka.bootstrap
        async with (
            OutputReader(bootstrap, topic_out) as reader,
            Producer(bootstrap, topic_in) as producer,
        ):
            warm = range(plan.warmup)
            await producer.burst(warm)
            complete = await reader.wait_for(warm, timeout=180)
            endpoint_stats(url, reset=True)
            cpu_before = meter.cpu_seconds()
            if profiler is not None:
                profiler.start()

            burst = range(warm.stop, warm.stop + plan.burst(s.latency))
            await producer.burst(burst)
            complete &= await reader.wait_for(burst, timeout=30 + len(burst) * s.latency)
            events_per_s = rate(reader.arrivals_ms(burst))

            pace = paced_rate or events_per_s / 2
            count = max(plan.paced_min, int(pace * plan.paced_seconds))
            paced = range(burst.stop, burst.stop + count)
            await producer.paced(paced, pace)
            complete &= await reader.wait_for(paced, timeout=30 + len(paced) * s.latency)
            cpu_s = meter.cpu_seconds() - cpu_before
            stats = endpoint_stats(url)
            complete &= reader.bad == 0
            return events_per_s, reader.latencies(paced), cpu_s, stats, pace, complete


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


def main() -> int:
    """Run every setting, print the table, append it to RESULTS.md (not for --smoke)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one setting, a few hundred events")
    parser.add_argument("--label", default="", help="names the run in RESULTS.md ('before', ...)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--setting",
        type=parse_setting,
        action="append",
        help="only this setting, task:latency_ms:cap (repeatable), e.g. chat:20:50",
    )
    parser.add_argument("--only", choices=("flink", "faust"), help="run one system only")
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
    chosen = args.setting or settings(args.smoke)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    plan = SMOKE if args.smoke else FULL
    workdir = Path(tempfile.mkdtemp(prefix="flink-bench-"))
    started, load_before = time.monotonic(), report.uptime()
    rows: list[report.Measured] = []
    with KafkaBroker() as kafka:
        bench = Bench(kafka, plan, workdir, args.profile)
        print(f"Kafka {kafka.version}; logs in {workdir}; {load_before}", flush=True)
        for latency in sorted({s.latency for s in chosen}):
            with fake_endpoint(latency) as url:
                for s in (s for s in chosen if s.latency == latency):
                    pace = args.paced_rate
                    if args.only != "faust":
                        rows.append(bench.run("flink", s, url, pace))
                        pace = pace or rows[-1].paced_rate
                    if args.only != "flink":
                        rows.append(bench.run("faust", s, url, pace))
                    print(
                        f"  {s.task} {latency * 1000:g} ms x{s.in_flight}: "
                        + ", ".join(
                            f"{m.system} {m.events_per_s:,.0f}/s"
                            for m in rows[-2:]
                            if (m.task, m.latency_ms) == (s.task, int(latency * 1000))
                        )
                        + f" ({time.monotonic() - started:.0f} s)",
                        flush=True,
                    )
    text = "\n".join(
        [
            f"Machine: {report.machine()}",
            f"Load: before `{load_before}`; after `{report.uptime()}`",
            f"Run: {time.monotonic() - started:.0f} s; Kafka {kafka.version}; Flink 2.3.0 "
            f"(flink-model-openai 2.3.0, Kafka connector 5.0.0-2.2), parallelism 1; events per "
            f"setting: {plan.warmup} warm-up, burst of {plan.burst(0.02)} (20 ms) or "
            f"{plan.burst(0.1)} (100 ms), paced at half "
            f"Flink's burst rate for {plan.paced_seconds:g} s (at least {plan.paced_min}).",
            "",
            report.render(rows),
            "",
            *report.targets(rows),
        ]
    )
    print("\n" + text)
    if not (args.smoke or args.no_write or args.only or args.setting or args.profile):
        label = f" ({args.label})" if args.label else ""
        title = f"## Flink SQL ML_PREDICT vs faust-inference{label}"
        with RESULTS.open("a") as out:
            if out.tell() == 0:
                out.write("# Benchmark results\n\nWritten by the benchmark scripts; newest last.\n")
            out.write(f"\n{title}\n\n{text}\n")
    return 0 if all(m.complete for m in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
