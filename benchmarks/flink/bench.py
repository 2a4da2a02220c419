"""One setting on the bench: start the systems, send the phases, read what came out.

``run.py`` decides which settings run, in which order and under which lock;
:class:`Bench` runs one setting, either each system alone in turn
(:meth:`Bench.alone`, the default design) or both at once
(:meth:`Bench.together`), and returns a :class:`report.Measured` row per system.
The phases (warm-up, burst, paced) and what each measures are described in
``run.py``'s module docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from benchmarks.flink import install, report
from benchmarks.flink.measure import GroupMeter, group_runqueue_wait, percentile
from benchmarks.flink.schedule import SYSTEMS, Plan, Setting
from benchmarks.flink.systems import FlinkJob, Profiler, faust_worker
from benchmarks.flink.traffic import OutputReader, Producer, endpoint_stats
from benchmarks.support import fake_endpoint, rate, unique
from devtools.kafka import KafkaBroker

__all__ = ["OUR_BATCH", "PACED_FRACTION", "Bench", "Side"]

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
