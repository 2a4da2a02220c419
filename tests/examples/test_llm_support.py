"""The LLM customer-support example, briefly, on the real broker and a real chat model.

Runs the example's own scenario (``examples/llm_support/run.py``) with the
session's Kafka broker, SmolLM2-135M served by llama-cpp-python and a real
``faust -A examples.llm_support.app worker`` process. First as shipped:
every ticket gets an answer validated into ``Triage``. Then with
``max_tokens`` too small for any complete answer: every ticket is asked
again ``LLM_RETRIES`` times and then dead-lettered with the reason.
"""

from __future__ import annotations

import pytest

from devtools.worker import FaustWorker
from examples.llm_support.run import TOPICS, scenario
from examples.llm_support.tickets import CATEGORIES

pytestmark = pytest.mark.integration


def start_worker(kafka, llm, tmp_path, name, **env):
    settings = {
        "KAFKA_BROKER": kafka.url,
        "LLM_URL": llm.url,
        "LLM_MODEL": llm.model_name,
        "LLM_JSON_MODE": "json_object",
        **env,
    }
    return FaustWorker("examples.llm_support.app", settings, tmp_path, name, log_level="warn")


async def test_tickets_are_answered_in_the_schema(kafka, llm, tmp_path):
    for topic, partitions in TOPICS.items():
        kafka.create_topic(topic, partitions=partitions)
    worker = start_worker(kafka, llm, tmp_path, "support").start()
    try:
        run = await scenario(kafka.bootstrap, worker, count=3, timeout=120)
    finally:
        worker.stop()
    assert run.complete, worker.log()
    assert run.dead == []
    assert sorted(a["id"] for a in run.answers) == sorted(t["id"] for t in run.tickets)
    for answer in run.answers:
        assert answer["category"] in CATEGORIES
        assert isinstance(answer["urgent"], bool)
        assert 1 <= len(answer["reply"]) <= 600
        assert answer["attempts"] >= 1


async def test_answers_that_never_validate_are_dead_lettered_with_the_reason(kafka, llm, tmp_path):
    for topic, partitions in TOPICS.items():
        kafka.create_topic(topic, partitions=partitions)
    kafka.create_topic("tickets-cut", partitions=1)  # not the first test's tickets again
    worker = start_worker(
        kafka,
        llm,
        tmp_path,
        "cut",
        SUPPORT_APP_ID="llm-support-cut",
        TICKETS_TOPIC="tickets-cut",
        LLM_MAX_TOKENS="4",
        LLM_RETRIES="1",
    ).start()
    try:
        # The answer and DLQ topics hold the first test's outcomes: these tickets have new ids.
        run = await scenario(
            kafka.bootstrap, worker, count=2, timeout=120, seed=12, topic="tickets-cut"
        )
    finally:
        worker.stop()
    assert run.complete, worker.log()
    assert run.answers == []
    assert sorted(d["event"]["id"] for d in run.dead) == sorted(t["id"] for t in run.tickets)
    for letter in run.dead:
        assert letter["error_class"] == "RetriesExhausted"
        assert letter["cause_class"] == "InvalidOutput"
        assert letter["attempts"] == 2  # the first call and one retry
        assert letter["model"] == "support"
