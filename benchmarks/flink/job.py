"""The Flink side: Kafka topic -> ``ML_PREDICT`` (provider ``openai``) -> Kafka topic.

Runs with the PyFlink virtualenv's interpreter (``benchmarks/flink/install.py``),
never with the project's: it imports nothing from this repository. One process
is one local mini-cluster running one streaming job, until it is killed::

    .cache/venv-flink/bin/python benchmarks/flink/job.py --bootstrap 127.0.0.1:PORT \
        --source in-topic --sink out-topic --endpoint http://127.0.0.1:PORT/v1 \
        --task embedding --in-flight 10 --jars .cache/flink-jars

Prints ``FLINK_JOB_RUNNING=<job id>`` once the job is submitted. The SQL is the
shape Flink documents for remote inference, with the job's settings chosen to
match the faust-inference worker it is compared with (see ``SETTINGS``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pyflink.table import EnvironmentSettings, TableEnvironment

# What both systems are asked to do; faust_app.py uses the same values.
SYSTEM_PROMPT = "You are a helpful assistant."
MODEL_NAME = "fake-model"
OUTPUT_TYPE = {"embedding": "ARRAY<FLOAT>", "chat": "STRING"}
ENDPOINT_SUFFIX = {"embedding": "embeddings", "chat": "chat/completions"}


def statements(args: argparse.Namespace) -> list[str]:
    """The DDL and the ``INSERT`` of the job, in order."""
    kafka = (
        f"'connector' = 'kafka', 'properties.bootstrap.servers' = '{args.bootstrap}', "
        "'format' = 'json'"
    )
    output = OUTPUT_TYPE[args.task]
    sink = ""
    if args.linger_ms is not None:  # else the Kafka client's default (5 ms in 4.x)
        sink = f", 'properties.linger.ms' = '{args.linger_ms}'"
    model_options = (
        f"'provider' = 'openai', "
        f"'endpoint' = '{args.endpoint}/{ENDPOINT_SUFFIX[args.task]}', "
        f"'api-key' = 'not-used-by-the-test-double', 'model' = '{MODEL_NAME}'"
    )
    if args.task == "chat":
        model_options += f", 'system-prompt' = '{SYSTEM_PROMPT}'"
    return [
        f"""CREATE TABLE src (id BIGINT, ts DOUBLE, input STRING) WITH ({kafka},
            'topic' = '{args.source}', 'properties.group.id' = '{args.source}-flink',
            'scan.startup.mode' = 'earliest-offset')""",
        f"""CREATE TABLE snk (id BIGINT, ts DOUBLE, output {output}) WITH ({kafka},
            'topic' = '{args.sink}', 'sink.delivery-guarantee' = 'at-least-once'{sink})""",
        f"""CREATE MODEL m INPUT (input STRING) OUTPUT (output {output})
            WITH ({model_options})""",
        f"""INSERT INTO snk SELECT id, ts, output
            FROM ML_PREDICT(TABLE src, MODEL m, DESCRIPTOR(input),
                            MAP['async', 'true',
                                'max-concurrent-operations', '{args.in_flight}'])""",
    ]


def _linger_ms_from_env() -> int | None:
    """Flink's sink ``linger.ms``, in ms, from the environment (None: the client's default).

    ``FLINK_BENCH_FLINK_LINGER`` (seconds) if set, else ``FLINK_BENCH_PRODUCER_LINGER``,
    the knob faust_app.py reads.

    With neither set, each system runs at its own default (Faust 0, Kafka's client
    5 ms); ``FLINK_BENCH_PRODUCER_LINGER=0.005`` puts both at 5 ms.
    """
    seconds = os.environ.get("FLINK_BENCH_FLINK_LINGER") or os.environ.get(
        "FLINK_BENCH_PRODUCER_LINGER"
    )
    return None if seconds in (None, "") else round(float(seconds) * 1000)


def main() -> int:
    """Submit the job, then wait for it (it ends when the process is killed)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--sink", required=True)
    p.add_argument("--endpoint", required=True, help="OpenAI base URL, ending in /v1")
    p.add_argument("--task", choices=sorted(OUTPUT_TYPE), required=True)
    p.add_argument("--in-flight", type=int, required=True)
    p.add_argument("--jars", type=Path, required=True, help="folder of extra jars")
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument(
        "--checkpoint-interval",
        default="1 s",
        help="Faust commits offsets every second in the benchmark; '0' disables",
    )
    p.add_argument(
        "--linger-ms",
        type=int,
        default=_linger_ms_from_env(),
        help="the sink producer's linger.ms (default: FLINK_BENCH_FLINK_LINGER, else "
        "FLINK_BENCH_PRODUCER_LINGER, in seconds, else the Kafka client's own default, 5 ms)",
    )
    args = p.parse_args()

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = env.get_config()
    jars = sorted(args.jars.resolve().glob("*.jar"))
    config.set("pipeline.jars", ";".join(jar.as_uri() for jar in jars))
    config.set("parallelism.default", str(args.parallelism))
    if args.checkpoint_interval not in ("0", ""):
        # At-least-once into the sink needs checkpoints, as Faust's needs commits.
        config.set("execution.checkpointing.interval", args.checkpoint_interval)
    for sql in statements(args)[:-1]:
        env.execute_sql(sql)
    result = env.execute_sql(statements(args)[-1])
    client = result.get_job_client()
    print(f"FLINK_JOB_RUNNING={client.get_job_id() if client else '?'}", flush=True)
    result.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
