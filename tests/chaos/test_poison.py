"""Poison records lose nothing and stop nothing (issue 11, item 1).

Before the fix, one value that is not JSON among a thousand good ones ended the
agent's stream: the events the pipeline had in flight were stranded, their
partition's commits stuck, SIGTERM hung, and in 6 of 12 runs one event was
missing for good after another worker took over. Here a real worker on the real
broker reads ten rounds of good records with poison of several kinds mixed in,
and every round is accounted for: each good id in the output, each poison record
in the dead-letter topic with its raw bytes, nothing lost, the committed offsets
at the end of every partition, and the worker stops within 10 s.

The model server is the fake endpoint (a test double: a fixed 20 ms latency keeps
calls in flight when a poison record arrives, which a ~1 ms real model does not).
"""

from __future__ import annotations

import base64
import functools

from devtools.fake_endpoint import FakeEndpoint
from tests.chaos.support import (
    APP,
    Account,
    Collector,
    Worker,
    chaos_env,
    committed_vs_end,
    good,
    produce_raw,
    stop_timed,
)

ROUNDS = 10
GOOD_PER_ROUND = 120
BIG = 5_000_000

# (name, value bytes, expected error class in the dead letter)
POISON = [
    ("not-json", b"\xff\xfe{not json", "UndecodableEvent"),
    ("nan", b'{"id": "nan", "x": [NaN]}', "UndecodableEvent"),
    ("empty", b"", "UndecodableEvent"),
    ("missing-field", b'{"id": "missing"}', "UndecodableEvent"),
    ("a-list", b"[1, 2, 3]", "UndecodableEvent"),
    # Decodes, fails preprocessing, and its dead letter is too big for the producer.
    ("big", b'{"id": "big' + b"z" * BIG + b'", "x": []}', "InvalidInput"),
    ("bad-utf8-key", b"\x80\x81", "UndecodableEvent"),
]


def _all_accounted(sent: set[str], out: list[dict], dlq: list[dict]) -> bool:
    return not Account(sent, out, dlq).lost


async def test_poison_records_are_dead_lettered_and_nothing_is_lost(kafka, tmp_path):
    async with FakeEndpoint(latency=0.02) as ep:
        env = chaos_env(
            kafka,
            ep.url,
            in_configs={"max.message.bytes": "8000000"},
            MAX_CONCURRENCY="8",
            BATCH_SIZE="4",
        )
        worker = Worker(APP, env, tmp_path, "poison", log_level="warn").start()
        sent: set[str] = set()
        poison_keys: dict[str, bytes] = {}
        poison_by_round: list[str] = []
        try:
            async with Collector(kafka.bootstrap, env["OUT_TOPIC"], env["DLQ_TOPIC"]) as seen:
                out = seen.records[env["OUT_TOPIC"]]
                dlq = seen.records[env["DLQ_TOPIC"]]
                for rnd in range(ROUNDS):
                    records = [good(rnd * GOOD_PER_ROUND + i) for i in range(GOOD_PER_ROUND)]
                    name, value, _ = POISON[rnd % len(POISON)]
                    key = f"poison-{rnd}-{name}".encode()
                    if name == "bad-utf8-key":
                        key = b"\xff\xfepoison-" + str(rnd).encode()
                    # In the middle of the round, so that calls are in flight around it.
                    records.insert(GOOD_PER_ROUND // 2, (key, value))
                    poison_keys[key.decode("utf-8", "backslashreplace")] = value
                    poison_by_round.append(key.decode("utf-8", "backslashreplace"))
                    sent |= {k.decode("utf-8", "backslashreplace") for k, _ in records}
                    await produce_raw(
                        kafka.bootstrap,
                        env["IN_TOPIC"],
                        records,
                        rate=400,
                        max_request_size=8_000_000,
                    )
                    await seen.wait_for(
                        functools.partial(_all_accounted, set(sent), out, dlq), 60, workers=[worker]
                    )
                    assert Account(sent, out, dlq).lost == set(), f"round {rnd}"
                stop_seconds = await stop_timed(worker)
        finally:
            worker.kill()

    account = Account(sent, out, dlq)
    assert account.lost == set()
    assert account.dead == set(poison_keys), "only the poison records are dead-lettered"
    by_key = {r["key"]: r for r in dlq}
    for rnd in range(ROUNDS):
        name, value, error_class = POISON[rnd % len(POISON)]
        letter = by_key[poison_by_round[rnd]]
        assert letter["error_class"] == error_class, letter
        assert letter["topic"] == env["IN_TOPIC"] and letter["offset"] is not None
        assert letter["partition"] is not None
        if error_class == "UndecodableEvent":
            assert letter["event"] is None
            assert base64.b64decode(letter["raw_value"]) == value
            assert "cannot be decoded" in letter["error"]
        else:  # the big one: cut down, still sent
            assert letter["truncated"] is True, {k: str(v)[:200] for k, v in letter.items()}
            assert letter["event"]["dead_letter_bytes"] > BIG
    assert stop_seconds < 10, f"SIGTERM took {stop_seconds:.1f}s\n{worker.log()}"
    offsets = await committed_vs_end(kafka.bootstrap, env["APP_ID"], env["IN_TOPIC"])
    assert all(c == e for c, e in offsets.values()), f"(committed, end) per partition: {offsets}"
    print(
        f"\n{ROUNDS} rounds, {len(sent)} records: 0 lost, {account.duplicates} duplicates, "
        f"stopped in {stop_seconds:.1f}s"
    )
