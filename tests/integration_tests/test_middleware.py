"""AlignerMiddleware in real ``create_agent`` loops: real tools, an Aligner served over HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.structured_output import ProviderStrategy, ToolStrategy
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from pydantic import BaseModel

from langchain_aligner.errors import AlignerBackendError
from langchain_aligner.middleware import AlignerMiddleware
from langchain_aligner.runnable import AlignerRunnable
from langchain_aligner.templates import ALIGNER_V1
from langchain_aligner.testing.fake_servers import FakeServer, fake_aligner_reply
from tests.helpers.agents import (
    ANSWER,
    QUESTION,
    ScriptedChatModel,
    add,
    answer_from_tools,
    call,
    chat_model_stream_events,
    check_messages_stream,
    get_weather,
    messages_stream,
    three_turns,
)

expected = fake_aligner_reply


def tgi_aligner(server: FakeServer, **kwargs: Any) -> AlignerRunnable:
    return AlignerRunnable(backend="tgi", url=server.url, max_retries=0, **kwargs)


def agent_with(server: FakeServer, model: ScriptedChatModel | None = None, **middleware: Any) -> Any:
    aligner = AlignerMiddleware(tgi_aligner(server), **middleware)
    return create_agent(model or three_turns(), [add, get_weather], middleware=[aligner])


def check_state(messages: list[Any]) -> None:
    """The final state of a three-turn run whose answer was corrected."""
    assert [type(m).__name__ for m in messages] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert len({m.id for m in messages}) == len(messages)
    tool_results = [m.text for m in messages if isinstance(m, ToolMessage)]
    assert tool_results == ["5", "sunny in Oslo, 14 degrees"]
    assert [m.tool_calls[0]["name"] for m in messages[1:5:2]] == ["add", "get_weather"]
    assert [m.id for m in messages[1:5:2]] == ["turn-1", "turn-2"]
    final = messages[-1]
    assert final.id == "turn-3"
    assert final.content == expected(QUESTION, ANSWER)
    assert final.response_metadata["aligner_original_answer"] == ANSWER
    assert final.response_metadata["aligner_corrected"] is True


def test_final_answer_is_corrected_in_place(tgi_server: FakeServer) -> None:
    model = three_turns()
    result = agent_with(tgi_server, model).invoke({"messages": [HumanMessage(QUESTION)]})
    check_state(result["messages"])
    # The model saw the real tool results, and the Aligner was asked once, about the answer only.
    seen = [m.text for m in model.calls[2] if isinstance(m, ToolMessage)]
    assert seen == ["5", "sunny in Oslo, 14 degrees"]
    assert [r["inputs"] for r in tgi_server.script.requests] == [ALIGNER_V1.format(QUESTION, ANSWER)]


async def test_ainvoke_corrects_the_final_answer(tgi_server: FakeServer) -> None:
    result = await agent_with(tgi_server).ainvoke({"messages": [HumanMessage(QUESTION)]})
    check_state(result["messages"])


def test_question_is_the_last_human_message(tgi_server: FakeServer) -> None:
    model = ScriptedChatModel(script=[AIMessage("Hi!", id="a1"), AIMessage("Paris.", id="a2")])
    agent = agent_with(tgi_server, model)
    first = agent.invoke({"messages": [HumanMessage("Hello")]})
    second = agent.invoke({"messages": [*first["messages"], HumanMessage("Capital of France?")]})
    assert second["messages"][-1].content == expected("Capital of France?", "Paris.")
    assert second["messages"][1].content == expected("Hello", "Hi!")
    assert len(second["messages"]) == 4


def test_stream_messages_carry_the_correction_once(tgi_server: FakeServer) -> None:
    # Without the middleware the same script streams raw tokens: what the middleware must keep out.
    plain = create_agent(three_turns(), [add, get_weather])
    raw = [m for m, _ in messages_stream(plain)]
    assert sum(isinstance(m, AIMessageChunk) and m.id == "turn-3" for m in raw) > 1

    check_messages_stream(messages_stream(agent_with(tgi_server)))


async def test_astream_messages_carry_the_correction_once(tgi_server: FakeServer) -> None:
    agent = agent_with(tgi_server)
    stream = agent.astream({"messages": [HumanMessage(QUESTION)]}, stream_mode="messages")
    items = [item async for item in stream]
    check_messages_stream(items)


async def test_astream_events_stream_no_uncorrected_text(tgi_server: FakeServer) -> None:
    # Without the middleware the model's tokens are on_chat_model_stream events: what must not leak.
    plain, _ = await chat_model_stream_events(create_agent(three_turns(), [add, get_weather]))
    assert ANSWER in plain

    streamed, final = await chat_model_stream_events(agent_with(tgi_server))
    assert streamed == ""  # the model is not asked to stream: its answer is corrected before anyone sees it
    check_state(final["messages"])


def test_stream_updates_carry_the_correction_once(tgi_server: FakeServer) -> None:
    agent = agent_with(tgi_server)
    updates = list(agent.stream({"messages": [HumanMessage(QUESTION)]}, stream_mode="updates"))
    finals = [
        message
        for update in updates
        for node_update in update.values()
        for message in (node_update or {}).get("messages", [])
        if message.id == "turn-3"
    ]
    assert [m.content for m in finals] == [expected(QUESTION, ANSWER)]


def test_correct_all_corrects_text_beside_tool_calls(tgi_server: FakeServer) -> None:
    preamble = "Let me add the numbers first."
    model = ScriptedChatModel(
        script=[
            call("turn-1", ("add", {"a": 2, "b": 3}), text=preamble),
            answer_from_tools("turn-2", "The sum is {0}."),
        ]
    )
    result = agent_with(tgi_server, model, correct="all").invoke({"messages": [HumanMessage(QUESTION)]})
    tool_turn, final = result["messages"][1], result["messages"][-1]
    assert tool_turn.content == expected(QUESTION, preamble)
    assert tool_turn.tool_calls[0]["name"] == "add" and tool_turn.tool_calls[0]["args"] == {"a": 2, "b": 3}
    assert result["messages"][2].text == "5"
    assert final.content == expected(QUESTION, "The sum is 5.")


def test_default_leaves_text_beside_tool_calls_alone(tgi_server: FakeServer) -> None:
    preamble = "Let me add the numbers first."
    model = ScriptedChatModel(
        script=[call("turn-1", ("add", {"a": 2, "b": 3}), text=preamble), AIMessage("Five.", id="turn-2")]
    )
    result = agent_with(tgi_server, model).invoke({"messages": [HumanMessage(QUESTION)]})
    assert result["messages"][1].content == preamble
    assert result["messages"][-1].content == expected(QUESTION, "Five.")


class Sum(BaseModel):
    """The sum of two numbers."""

    value: int


def test_structured_response_turn_passes_through(tgi_server: FakeServer) -> None:
    model = ScriptedChatModel(
        script=[
            call("turn-1", ("add", {"a": 2, "b": 3})),
            call("turn-2", ("Sum", {"value": 5}), text="Here is the structured result."),
        ]
    )
    aligner = AlignerMiddleware(tgi_aligner(tgi_server), correct="all")
    agent = create_agent(model, [add], middleware=[aligner], response_format=ToolStrategy(Sum))
    result = agent.invoke({"messages": [HumanMessage(QUESTION)]})
    assert result["structured_response"] == Sum(value=5)
    assert result["messages"][3].content == "Here is the structured result."
    assert tgi_server.script.requests == []


def test_provider_structured_answer_passes_through(tgi_server: FakeServer) -> None:
    # A JSON answer without tool calls looks like a final answer: only its structured response marks it.
    model = ScriptedChatModel(script=[AIMessage('{"value": 5}', id="turn-1")])
    agent = create_agent(
        model,
        [add],
        middleware=[AlignerMiddleware(tgi_aligner(tgi_server))],
        response_format=ProviderStrategy(Sum),
    )
    result = agent.invoke({"messages": [HumanMessage(QUESTION)]})
    assert result["structured_response"] == Sum(value=5)
    assert result["messages"][-1].content == '{"value": 5}'
    assert tgi_server.script.requests == []


@pytest.mark.parametrize(
    "question",
    [AIMessage("Say hello."), HumanMessage(content=[{"type": "image", "url": "https://x.test/a.png"}])],
)
@pytest.mark.parametrize("on_error", ["return_original", "raise"])
def test_answer_without_a_text_question_passes_through_marked(
    tgi_server: FakeServer, question: Any, on_error: str
) -> None:
    model = ScriptedChatModel(script=[AIMessage("Hello.", id="turn-1")])
    agent = agent_with(tgi_server, model, on_error=on_error)
    final = agent.invoke({"messages": [question]})["messages"][-1]
    assert final.content == "Hello." and final.id == "turn-1"
    assert final.response_metadata["aligner_skipped"] == "no_question"
    assert tgi_server.script.requests == []


def unreachable_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_server_error_fails_open_by_default(tgi_server: FakeServer) -> None:
    tgi_server.script.fail.append(500)
    result = agent_with(tgi_server).invoke({"messages": [HumanMessage(QUESTION)]})
    final = result["messages"][-1]
    assert final.id == "turn-3"
    assert final.content == ANSWER
    assert final.response_metadata["aligner_corrected"] is False
    assert final.response_metadata["aligner_error"].startswith("AlignerBackendError")
    assert len(result["messages"]) == 6


async def test_unreachable_server_fails_open_async() -> None:
    aligner = AlignerMiddleware({"backend": "tgi", "url": unreachable_url(), "max_retries": 0})
    agent = create_agent(three_turns(), [add, get_weather], middleware=[aligner])
    result = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]})
    assert result["messages"][-1].content == ANSWER
    assert result["messages"][-1].response_metadata["aligner_error"]


def test_server_error_fails_closed_when_asked(tgi_server: FakeServer) -> None:
    tgi_server.script.fail.append(500)
    agent = agent_with(tgi_server, on_error="raise")
    with pytest.raises(AlignerBackendError) as raised:
        agent.invoke({"messages": [HumanMessage(QUESTION)]})
    assert raised.value.status == 500


async def test_unreachable_server_fails_closed_async() -> None:
    config = {"backend": "tgi", "url": unreachable_url(), "max_retries": 0}
    agent = create_agent(
        three_turns(), [add, get_weather], middleware=[AlignerMiddleware(config, on_error="raise")]
    )
    with pytest.raises(AlignerBackendError):
        await agent.ainvoke({"messages": [HumanMessage(QUESTION)]})


def test_on_error_overrides_the_aligner_without_changing_it(tgi_server: FakeServer) -> None:
    aligner = tgi_aligner(tgi_server)
    middleware = AlignerMiddleware(aligner, on_error="raise")
    assert middleware.aligner.on_error == "raise"
    assert aligner.on_error == "return_original"


def test_bad_arguments_are_refused(tgi_server: FakeServer) -> None:
    with pytest.raises(ValueError, match="correct"):
        AlignerMiddleware(tgi_aligner(tgi_server), correct="some")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AlignerRunnable"):
        AlignerMiddleware("http://127.0.0.1:8080")  # type: ignore[arg-type]
