"""Chat inputs, read once for every chat provider (openai, azure_openai, vertex, gemini, bedrock).

A chat input is a string (the user's message), an OpenAI-style list of
``{"role", "content"}`` messages, or a dict of request fields that holds
``messages``. :func:`chat_request` turns any of these into a
:class:`ChatRequest`: the system instructions apart (each API wants them in
its own place: a ``system`` message for OpenAI, ``systemInstruction`` for
Gemini and Vertex, a top-level ``system`` for Bedrock Converse) and the
conversation in order. A model's ``system_prompt=`` comes first, before any
system message of the input itself.

Example:
    >>> r = chat_request([{"role": "system", "content": "Be brief."},
    ...                   {"role": "user", "content": "Hi"}], system_prompt="You are a bot.")
    >>> r.system, r.messages
    (['You are a bot.', 'Be brief.'], [{'role': 'user', 'content': 'Hi'}])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from faust_inference.exceptions import InvalidInput

__all__ = ["ChatRequest", "chat_request", "describe", "require_text"]

_SYSTEM_ROLES = frozenset({"system", "developer"})


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat input, read: system instructions, the conversation, other request fields.

    Attributes:
        system: system instructions, in order (the model's ``system_prompt`` first).
        messages: the conversation without system messages; each a dict with
            ``role`` and ``content`` (a string, or the API's own content list).
        extra: other request fields of a dict input (``temperature`` ...).
    """

    system: list[str]
    messages: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    def openai_messages(self) -> list[dict[str, Any]]:
        """The messages as OpenAI's API takes them: one system message first.

        Example:
            >>> chat_request("Hi", system_prompt="Be brief.").openai_messages()
            [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
        """
        head = [{"role": "system", "content": "\n\n".join(self.system)}] if self.system else []
        return [*head, *self.messages]

    def content_text(self, message: dict[str, Any]) -> str:
        """A message's content as text (the text parts of a content list, joined)."""
        return _text_of(message.get("content"))


def chat_request(
    value: Any,
    *,
    system_prompt: str | None = None,
    native_key: str | None = None,
    what: str = "a chat input",
) -> ChatRequest:
    """Read a chat input; see the module docstring for the accepted forms.

    Args:
        value: the model input.
        system_prompt: the model's ``system_prompt=``, put before any system
            message of the input.
        native_key: a request field that marks a dict input as the API's own
            body (``contents`` for Gemini); such a dict is passed through as
            ``extra``, untouched.
        what: how the API calls its input, for messages ("a Converse input").

    Raises:
        InvalidInput: any other shape, or an empty user message.
    """
    system = [system_prompt] if system_prompt else []
    if isinstance(value, str):
        if not value.strip():
            raise InvalidInput("input", "the chat message is empty; send some text")
        return ChatRequest(system, [{"role": "user", "content": value}])
    if isinstance(value, dict) and native_key is not None and native_key in value:
        return ChatRequest(system, [], dict(value))
    extra: dict[str, Any] = {}
    messages: Any = value
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        extra = {k: v for k, v in value.items() if k != "messages"}
        messages = value["messages"]
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
    ):
        raise InvalidInput(
            "input",
            f"{what} must be a string, a non-empty list of {{'role', 'content'}} "
            f"messages, or a dict with '{native_key or 'messages'}'; got {describe(value)}",
        )
    conversation = []
    for message in messages:
        if message["role"] in _SYSTEM_ROLES:
            text = _text_of(message.get("content"))
            if text:
                system.append(text)
        else:
            conversation.append(message)
    if not conversation:
        raise InvalidInput("input", "the chat has system messages only; add a user message")
    return ChatRequest(system, conversation, extra)


def require_text(value: Any, what: str = "an embedding input") -> str:
    """``value`` if it is a non-empty string, else the error naming what was expected.

    Example:
        >>> require_text("a sentence")
        'a sentence'

    Raises:
        InvalidInput: not a string, or empty.
    """
    if not isinstance(value, str) or not value:
        raise InvalidInput("input", f"{what} must be a non-empty string, got {describe(value)}")
    return value


def describe(value: Any) -> str:
    """A short description of an input value for error messages (60 characters at most).

    Example:
        >>> describe(list(range(100)))
        '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16...'
    """
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)
