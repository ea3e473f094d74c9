"""A scripted chat model that drives real ``create_agent`` loops, the real tools it calls, and what
langchain-tests' standard suites pass to ChatAligner."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import tool
from pydantic import PrivateAttr

from langchain_aligner.testing.fake_servers import fake_aligner_reply

Turn = AIMessage | Callable[[list[BaseMessage]], AIMessage]
"""A scripted turn: a fixed message, or a function of the conversation so far."""


class ScriptedChatModel(BaseChatModel):
    """Plays ``script`` turn by turn; streams each turn word by word.

    A turn may be a function of the messages it receives, so that an answer can quote what the real tools
    returned. ``calls`` records the messages of every call. ``bind_tools`` keeps the script (and does
    nothing else), so the model works as the model of ``create_agent``.
    """

    script: list[Any]
    """The turns, as :data:`Turn` values."""
    _calls: list[list[BaseMessage]] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[list[BaseMessage]]:
        return self._calls

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(**kwargs)

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        if len(self._calls) >= len(self.script):
            raise AssertionError(f"the script has only {len(self.script)} turns")
        turn = self.script[len(self._calls)]
        self._calls.append(list(messages))
        return (turn(messages) if callable(turn) else turn).model_copy()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next(messages))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._next(messages)
        words = message.text.split(" ") if message.text else []
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        for piece in pieces:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece, id=message.id))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        last = AIMessageChunk(
            content="",
            id=message.id,
            tool_call_chunks=[
                tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
                for i, c in enumerate(message.tool_calls)
            ],
            chunk_position="last",
        )
        chunk = ChatGenerationChunk(message=last)
        if run_manager:
            run_manager.on_llm_new_token("", chunk=chunk)
        yield chunk


def call(message_id: str, *calls: tuple[str, dict[str, Any]], text: str = "") -> AIMessage:
    """A tool-call turn: ``call("m1", ("add", {"a": 1, "b": 2}))``."""
    return AIMessage(
        id=message_id,
        content=text,
        tool_calls=[
            {"name": name, "args": args, "id": f"{message_id}-call-{i}", "type": "tool_call"}
            for i, (name, args) in enumerate(calls)
        ],
    )


def answer_from_tools(message_id: str, template: str) -> Callable[[list[BaseMessage]], AIMessage]:
    """A final turn whose text quotes the tool results it was given: ``template.format(*results)``."""

    def turn(messages: list[BaseMessage]) -> AIMessage:
        results = [m.text for m in messages if isinstance(m, ToolMessage)]
        return AIMessage(id=message_id, content=template.format(*results))

    return turn


QUESTION = "What is 2 + 3, and what is the weather in Oslo?"
"""The question of :func:`three_turns`."""

ANSWER = "The sum is 5 and it is sunny in Oslo, 14 degrees."
"""The final answer of :func:`three_turns`, before correction."""


def three_turns() -> ScriptedChatModel:
    """Two tool-calling turns (``add``, ``get_weather``), then :data:`ANSWER` quoting the tools' results."""
    return ScriptedChatModel(
        script=[
            call("turn-1", ("add", {"a": 2, "b": 3})),
            call("turn-2", ("get_weather", {"city": "Oslo"})),
            answer_from_tools("turn-3", "The sum is {0} and it is {1}."),
        ]
    )


async def chat_model_stream_events(agent: Any, question: str = QUESTION) -> tuple[str, Any]:
    """The text of every ``on_chat_model_stream`` event of ``agent.astream_events(version="v2")``, joined,
    and the agent's final state: what a UI that shows the model's tokens as they come would show."""
    text, final = "", None
    async for event in agent.astream_events({"messages": [HumanMessage(question)]}, version="v2"):
        if event["event"] == "on_chat_model_stream":
            text += event["data"]["chunk"].text
        elif event["event"] == "on_chain_end" and not event["parent_ids"]:
            final = event["data"]["output"]
    return text, final


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def get_weather(city: str) -> str:
    """Report the weather in a city."""
    return f"sunny in {city}, {len(city) + 10} degrees"


def messages_stream(agent: Any) -> list[tuple[Any, dict[str, Any]]]:
    """What ``agent.stream(..., stream_mode="messages")`` yields for :data:`QUESTION`."""
    return list(agent.stream({"messages": [HumanMessage(QUESTION)]}, stream_mode="messages"))


def check_messages_stream(items: list[tuple[Any, dict[str, Any]]]) -> None:
    """Each turn of a corrected :func:`three_turns` run arrives once, whole; the answer only as its
    correction (the fake Aligner's): no raw tokens of either model."""
    messages = [m for m, _ in items]
    assert [m.id for m in messages if not isinstance(m, ToolMessage)] == ["turn-1", "turn-2", "turn-3"]
    assert not any(isinstance(m, AIMessageChunk) for m in messages)
    final = messages[-1]
    assert final.content == fake_aligner_reply(QUESTION, ANSWER)
    assert final.response_metadata["aligner_original_answer"] == ANSWER
    assert not any(ANSWER.split()[0] in m.text for m in messages[:-1])


CHAT_ALIGNER_STANDARD_PARAMS = {"max_tokens": 100, "stop": []}
"""What langchain-tests' standard suites pass to ChatAligner; the other standard parameters (temperature,
timeout, max_retries, api_key) belong to the inner model and to the Aligner's backend, and ChatAligner refuses
unknown fields."""
