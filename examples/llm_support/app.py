"""Classify and answer support tickets with a chat model, in a schema you can trust.

Run it as any Faust app, against any OpenAI-compatible endpoint::

    KAFKA_BROKER=kafka://127.0.0.1:9092 LLM_URL=https://api.openai.com/v1 \
        LLM_MODEL=gpt-4o-mini OPENAI_API_KEY=... \
        faust -A examples.llm_support.app worker -l info

Each ticket on ``tickets`` goes to ``/chat/completions`` with a system prompt
and ``output_type=Triage``: the request asks for JSON in ``Triage``'s schema
(``response_format``), every answer is validated into a ``Triage`` object,
and an answer that does not validate (cut short by ``max_tokens``, a missing
field, a category that does not exist) is asked again, up to ``retries``
times. A ticket that still has no valid answer lands in ``tickets.dlq`` with
the validation error, and the stream goes on. Answers go to ``ticket-answers``,
urgent ones also to ``tickets.urgent``.

Settings (environment): ``LLM_URL``, ``LLM_MODEL``, ``OPENAI_API_KEY`` (only
needed by servers that check it), ``LLM_JSON_MODE`` (``json_schema``, the
default, for OpenAI and vLLM; ``json_object`` for llama.cpp's server),
``LLM_MAX_TOKENS``, ``LLM_RETRIES`` and ``TICKETS_TOPIC`` (default ``tickets``).
"""

from __future__ import annotations

import os
from typing import Any, Literal

import faust
from pydantic import BaseModel, ConfigDict, Field

from faust_inference import infer, install

app = faust.App(
    os.environ.get("SUPPORT_APP_ID", "llm-support"),
    broker=os.environ.get("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    topic_partitions=4,
)
install(app)


class Triage(BaseModel):
    """What the model must answer for every ticket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: Literal["billing", "shipping", "technical", "account", "returns"]
    urgent: bool = Field(description="true if the customer is losing money or access now")
    reply: str = Field(min_length=1, max_length=300, description="a short, polite first reply")


class Ticket(faust.Record, serializer="json"):
    id: str
    customer: str
    subject: str
    body: str


SYSTEM_PROMPT = (
    "You are a support agent for an outdoor-gear web shop. Classify the customer's "
    "ticket into one category: billing, shipping, technical, account or returns. Say "
    "whether it is urgent. Write a polite first reply of one sentence. Answer in JSON only."
)

support = app.model(
    "support",
    provider="openai",  # any OpenAI-compatible /chat/completions endpoint
    endpoint=os.environ.get("LLM_URL", "http://127.0.0.1:8000/v1"),
    remote_name=os.environ.get("LLM_MODEL", "smollm2"),
    task="text_generation",
    output_type=Triage,  # r.output is a validated Triage
    json_mode=os.environ.get("LLM_JSON_MODE", "json_schema"),
    system_prompt=SYSTEM_PROMPT,
    parameters={
        "temperature": 0.2,
        "max_tokens": int(os.environ.get("LLM_MAX_TOKENS", "160")),
    },
    max_concurrency=2,  # a CPU model: more in flight only queues on the server
    timeout=60.0,
    retries=int(os.environ.get("LLM_RETRIES", "2")),  # invalid answers are asked again
)


@support.preprocess
def ticket_text(ticket: Ticket) -> str:
    """The user message: what the customer wrote."""
    return f"Subject: {ticket.subject}\n\n{ticket.body}"


tickets = app.topic(os.environ.get("TICKETS_TOPIC", "tickets"), value_type=Ticket)
answers = app.topic("ticket-answers", value_serializer="json")
urgent = app.topic("tickets.urgent", value_serializer="json")


@app.agent(tickets)
@infer(support, dead_letter="tickets.dlq")
async def triage(results: Any) -> None:
    async for r in results:
        answer: Triage = r.output
        value = {
            "id": r.event.id,
            "customer": r.event.customer,
            **answer.model_dump(),
            "attempts": r.attempts,
            "latency_ms": round(r.latency_s * 1000, 1),
            "tokens": None if r.usage is None else r.usage.output_tokens,
        }
        await answers.send(key=r.event.id, value=value)
        if answer.urgent:
            await urgent.send(key=r.event.id, value=value)
