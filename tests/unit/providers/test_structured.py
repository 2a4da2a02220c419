"""Structured outputs and chat messages: what each chat API is sent, and how answers are checked.

The servers are FakeCloud, a test double on 127.0.0.1 that records requests
and answers in each API's documented shape: OpenAI, Gemini and Bedrock
cannot be reached from the test machines. The same feature against a real
small model (SmolLM2 via llama.cpp's server) is in
tests/integration/test_structured_outputs.py.
"""

from __future__ import annotations

from typing import Literal

import orjson
import pytest
from pydantic import BaseModel

from faust_inference import ConfigurationError, InvalidOutput, RetriesExhausted

from .cloud_fake import FakeCloud, json_reply
from .test_bedrock import CLAUDE, bedrock

API_KEY = "AIzaFAKEkey0123456789"


class Address(BaseModel):
    city: str
    zip: str | None = None


class Ticket(BaseModel):
    category: Literal["billing", "bug", "other"]
    urgent: bool
    address: Address | None = None


def chat_answers(*contents: str):
    """An OpenAI-compatible server answering the given contents in turn (the last repeats)."""
    answers = list(contents)

    def handler(req):
        content = answers.pop(0) if len(answers) > 1 else answers[0]
        return json_reply(
            {
                "choices": [{"message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7},
            }
        )

    return handler


async def test_openai_asks_for_the_schema_and_returns_the_validated_object(registry):
    async with FakeCloud(chat_answers('{"category": "billing", "urgent": true}')) as cloud:
        model = registry.register(
            "triage",
            provider="openai",
            endpoint=f"{cloud.url}/v1",
            task="text_generation",
            output_type=Ticket,
            system_prompt="Triage the ticket.",
        )
        out = await model.predict("I was charged twice")
        assert out == Ticket(category="billing", urgent=True)
        sent = cloud.last.json
        fmt = sent["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Ticket"
        assert fmt["json_schema"]["strict"] is True
        schema = fmt["json_schema"]["schema"]
        assert schema["additionalProperties"] is False
        assert schema["required"] == ["category", "urgent", "address"]
        assert "$defs" not in orjson.dumps(schema).decode()  # references inlined
        nested = schema["properties"]["address"]["anyOf"][0]
        assert nested["required"] == ["city", "zip"] and nested["additionalProperties"] is False
        assert sent["messages"][0] == {"role": "system", "content": "Triage the ticket."}


async def test_json_object_mode_sends_the_schema_the_llama_cpp_way(registry):
    async with FakeCloud(
        chat_answers('```json\n{"category": "bug", "urgent": false}\n```')
    ) as cloud:
        model = registry.register(
            "triage",
            provider="openai",
            endpoint=f"{cloud.url}/v1",
            task="text_generation",
            output_type=Ticket,
            json_mode="json_object",
        )
        assert (await model.predict("crash")).category == "bug"  # a fenced answer is read
        fmt = cloud.last.json["response_format"]
        assert fmt["type"] == "json_object" and set(fmt) == {"type", "schema"}
        assert fmt["schema"]["properties"]["category"]["enum"] == ["billing", "bug", "other"]
        assert fmt["schema"]["required"] == ["category", "urgent"]  # not strict: as pydantic says


async def test_an_invalid_answer_is_asked_again_then_fails_with_the_validation_error(registry):
    fast = {"max_retries": 2, "initial_backoff": 0.001, "jitter": 0}
    async with FakeCloud(
        chat_answers(
            '{"category": "refund"}', "Sure! Here it is:", '{"category": "other", "urgent": false}'
        )
    ) as cloud:
        model = registry.register(
            "triage",
            provider="openai",
            endpoint=f"{cloud.url}/v1",
            task="text_generation",
            output_type=Ticket,
            retries=fast,
        )
        assert await model.predict("hello") == Ticket(category="other", urgent=False)
        assert len(cloud.requests) == 3
    echo = '{"category": "refund", "note": "your key sk-leaked-key-0001"}'
    async with FakeCloud(chat_answers(echo)) as cloud:
        model = registry.register(
            "strict",
            provider="openai",
            endpoint=f"{cloud.url}/v1",
            task="text_generation",
            output_type=Ticket,
            retries=fast,
            api_key="sk-leaked-key-0001",
        )
        with pytest.raises(RetriesExhausted) as info:
            await model.predict("hello")
        last = info.value.last_error
        assert isinstance(last, InvalidOutput) and last.retryable
        assert "output_type Ticket" in str(last) and "category" in str(last)
        assert "urgent: Field required" in str(last) and info.value.attempts == 3
        assert "sk-leaked" not in str(last)


def test_output_type_where_no_json_can_be_asked_for_is_a_configuration_error(registry):
    with pytest.raises(ConfigurationError, match="output_type= needs a chat model"):
        registry.register(
            "e",
            provider="openai",
            endpoint="http://127.0.0.1:9/v1",
            task="embedding",
            output_type=Ticket,
        )
    with pytest.raises(ConfigurationError, match="output_type= needs a chat model"):
        registry.register("k", provider="kserve", endpoint="http://127.0.0.1:9", output_type=Ticket)


def gemini_json(req):
    return json_reply(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {
                                "text": '{"category": "bug", "urgent": true, "address": {"city": "Oslo"}}'
                            }
                        ],
                    }
                }
            ],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 9},
        }
    )


async def test_gemini_gets_a_response_schema_and_system_instruction(registry):
    async with FakeCloud(gemini_json) as cloud:
        model = registry.register(
            "triage",
            provider="gemini",
            endpoint=cloud.url,
            api_key=API_KEY,
            remote_name="gemini-2.0-flash",
            task="text_generation",
            output_type=Ticket,
            system_prompt="Triage.",
            parameters={"temperature": 0},
        )
        out = await model.predict(
            [
                {"role": "system", "content": "Answer in JSON."},
                {"role": "user", "content": "app crashes"},
            ]
        )
        assert out.address == Address(city="Oslo")
        sent = cloud.last.json
        assert sent["systemInstruction"] == {"parts": [{"text": "Triage.\n\nAnswer in JSON."}]}
        assert sent["contents"] == [{"role": "user", "parts": [{"text": "app crashes"}]}]
        config = sent["generationConfig"]
        assert config["temperature"] == 0 and config["responseMimeType"] == "application/json"
        schema = config["responseSchema"]
        assert schema["type"] == "OBJECT" and schema["required"] == ["category", "urgent"]
        assert schema["properties"]["category"] == {
            "type": "STRING",
            "enum": ["billing", "bug", "other"],
        }
        assert schema["properties"]["address"]["nullable"] is True
        assert schema["propertyOrdering"] == ["category", "urgent", "address"]
        assert "title" not in orjson.dumps(schema).decode()


def converse_tool_answer(req):
    return json_reply(
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [
                        {
                            "toolUse": {
                                "toolUseId": "t1",
                                "name": "Ticket",
                                "input": {"category": "billing", "urgent": False},
                            }
                        }
                    ],
                }
            },
            "stopReason": "tool_use",
            "usage": {"inputTokens": 4, "outputTokens": 6},
        }
    )


async def test_bedrock_forces_a_tool_with_the_schema_and_puts_system_on_top(registry):
    async with FakeCloud(converse_tool_answer) as cloud:
        model = bedrock(
            registry,
            cloud,
            "claude",
            task="text_generation",
            remote_name=CLAUDE,
            output_type=Ticket,
            system_prompt="You triage tickets.",
        )
        out = await model.predict(
            {
                "messages": [
                    {"role": "system", "content": "Be terse."},
                    {"role": "user", "content": "double charge"},
                ],
                "inferenceConfig": {"maxTokens": 50},
            }
        )
        assert out == Ticket(category="billing", urgent=False)
        sent = cloud.last.json
        assert sent["system"] == [{"text": "You triage tickets."}, {"text": "Be terse."}]
        assert sent["messages"] == [{"role": "user", "content": [{"text": "double charge"}]}]
        assert sent["inferenceConfig"] == {"maxTokens": 50}
        tool = sent["toolConfig"]
        assert tool["toolChoice"] == {"tool": {"name": "Ticket"}}
        assert tool["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"]["urgent"] == {
            "title": "Urgent",
            "type": "boolean",
        }


async def test_system_prompt_combines_with_a_message_list_everywhere(registry):
    async with FakeCloud(chat_answers("ok")) as cloud:
        model = registry.register(
            "chat",
            provider="openai",
            endpoint=f"{cloud.url}/v1",
            task="text_generation",
            system_prompt="Be kind.",
        )
        await model.predict(
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "bye"},
            ]
        )
        assert cloud.last.json["messages"] == [
            {"role": "system", "content": "Be kind.\n\nBe brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"},
        ]
