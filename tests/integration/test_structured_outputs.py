"""Structured outputs against a real small chat model (SmolLM2-135M on llama-cpp-python).

``output_type=`` asks the server for JSON in the pydantic model's schema,
validates every answer into that model, and treats an answer that does not
validate as a retryable ``InvalidOutput``: asked again up to ``retries``
times, then given up with the validation error as the reason. The model is
real and tiny; the invalid answers are provoked the two ways they happen in
production: an answer cut short by ``max_tokens``, and a rule of the
pydantic model that its JSON schema cannot express.
"""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, field_validator

from faust_inference import InvalidOutput, RetriesExhausted

pytestmark = pytest.mark.integration

TICKETS = [
    "Subject: Charged twice\n\nI was charged twice for order #4411. Please refund one.",
    "Subject: Where is my parcel\n\nOrder #2040 was due a week ago and tracking has not moved.",
    "Subject: App crashes\n\nThe app crashes every time I open my basket on Android.",
]
SYSTEM = (
    "Classify the customer's ticket into one category: billing, shipping, technical, "
    "account or returns, and say whether it is urgent. Answer in JSON only."
)


class Triage(BaseModel):
    category: Literal["billing", "shipping", "technical", "account", "returns"]
    urgent: bool


class ShoutedTriage(Triage):
    """A rule the schema cannot carry: the server's grammar lets lower case through."""

    @field_validator("category")
    @classmethod
    def _upper(cls, value: str) -> str:
        if value != value.upper():
            raise ValueError("category must be written in capitals")
        return value


def register(registry, llm, name, output_type, *, max_tokens=60, retries=2):
    return registry.register(
        name,
        provider="openai",
        endpoint=llm.url,
        remote_name=llm.model_name,
        task="text_generation",
        output_type=output_type,
        json_mode="json_object",  # llama.cpp's server: {"type": "json_object", "schema": ...}
        system_prompt=SYSTEM,
        parameters={"temperature": 0.0, "max_tokens": max_tokens},
        retries={"max_retries": retries, "initial_backoff": 0.01},
        timeout=60.0,
        max_concurrency=2,
    )


async def test_answers_are_validated_into_the_model(llm, registry):
    model = register(registry, llm, "triage", Triage)
    outputs = await model.predict_many(TICKETS[:2])
    assert len(outputs) == 2
    for output in outputs:
        assert type(output) is Triage  # the validated object, not text or a dict
        assert output.category in {"billing", "shipping", "technical", "account", "returns"}
    outcome = await model.runner.submit(TICKETS[2])
    assert outcome.attempts == 1  # a schema-constrained answer is valid at once
    assert outcome.usage is not None and outcome.usage.output_tokens > 0


async def test_an_answer_cut_by_max_tokens_is_retried_then_given_up(llm, registry):
    model = register(registry, llm, "cut", Triage, max_tokens=3, retries=2)
    with pytest.raises(RetriesExhausted) as caught:
        await model.predict(TICKETS[0])
    assert caught.value.attempts == 3  # the first call and both retries
    assert isinstance(caught.value.last_error, InvalidOutput)
    assert "Triage" in str(caught.value) or "JSON" in str(caught.value)


async def test_a_rule_the_schema_cannot_express_is_retried_then_given_up(llm, registry):
    model = register(registry, llm, "shouted", ShoutedTriage, retries=1)
    with pytest.raises(RetriesExhausted) as caught:
        await model.predict(TICKETS[1])
    assert caught.value.attempts == 2
    assert isinstance(caught.value.last_error, InvalidOutput)
    assert "capitals" in str(caught.value)  # the validation error is the reason
