"""ChatAligner: an inner chat model answers, an Aligner served over HTTP on 127.0.0.1 corrects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.load import dumpd, load
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tracers import BaseTracer
from langchain_core.tracers.schemas import Run
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from langchain_aligner import AlignerRunnable
from langchain_aligner.chat_model import ChatAligner
from langchain_aligner.errors import AlignerBackendError
from langchain_aligner.templates import ALIGNER_V1
from langchain_aligner.testing.fake_servers import FakeServer, fake_aligner_reply, fake_tokens
from tests.helpers.agents import (
    ScriptedChatModel,
    add,
    answer_from_tools,
    call,
    chat_model_stream_events,
    get_weather,
)

USAGE = {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}


expected = fake_aligner_reply


def chat(server: FakeServer, *turns: Any, **kwargs: Any) -> ChatAligner:
    aligner = {"backend": "tgi", "url": server.url, "max_retries": 0, **kwargs.pop("aligner", {})}
    return ChatAligner(llm=ScriptedChatModel(script=list(turns)), aligner=aligner, **kwargs)


def paris() -> AIMessage:
    return AIMessage("Paris.", id="inner-id", usage_metadata=USAGE)


CONVERSATION = [
    SystemMessage("Be brief."),
    HumanMessage("Hi"),
    AIMessage("Hello!"),
    HumanMessage("Capital of France?"),
]


def test_invoke_corrects_against_the_last_human_message(tgi_server: FakeServer) -> None:
    model = chat(tgi_server, paris())
    result = model.invoke(CONVERSATION)
    assert result.content == expected("Capital of France?", "Paris.")
    assert result.response_metadata["aligner_original_answer"] == "Paris."
    assert result.id != "inner-id"
    # The inner model's run and the Aligner's report their usage; ChatAligner's own message repeats none.
    assert result.usage_metadata is None
    assert result.response_metadata["aligner_usage"]["output_tokens"] == len(fake_tokens(result.text))
    assert model.llm.calls == [CONVERSATION]  # type: ignore[attr-defined]


async def test_ainvoke(tgi_server: FakeServer) -> None:
    result = await chat(tgi_server, paris()).ainvoke("Capital of France?")
    assert result.content == expected("Capital of France?", "Paris.")


def check_stream(chunks: list[AIMessageChunk], question: str) -> None:
    correction = expected(question, "Paris.")
    assert len(chunks) == len(fake_tokens(correction)) + 1
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    assert full.content == correction
    assert chunks[-1].chunk_position == "last"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id != "inner-id"
    prompt_tokens = 1 + len(fake_tokens(ALIGNER_V1.format(question, "Paris.")))
    aligner_usage = {
        "input_tokens": prompt_tokens,
        "output_tokens": len(fake_tokens(correction)),
        "total_tokens": prompt_tokens + len(fake_tokens(correction)),
    }
    assert full.usage_metadata is None  # the inner runs report theirs (tests/integration_tests/test_usage.py)
    assert full.response_metadata["aligner_usage"] == aligner_usage
    assert full.response_metadata["aligner_original_answer"] == "Paris."


def test_stream_yields_the_correction_piece_by_piece(tgi_server: FakeServer) -> None:
    check_stream(list(chat(tgi_server, paris()).stream("Capital of France?")), "Capital of France?")


async def test_astream(tgi_server: FakeServer) -> None:
    chunks = [c async for c in chat(tgi_server, paris()).astream("Capital of France?")]
    check_stream(chunks, "Capital of France?")


class TokenCounter(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


def test_streaming_flag_streams_invoke_to_callbacks(tgi_server: FakeServer) -> None:
    counter = TokenCounter()
    result = chat(tgi_server, paris(), streaming=True).invoke("Capital?", config={"callbacks": [counter]})
    assert "".join(counter.tokens) == result.content == expected("Capital?", "Paris.")


class RunTrees(BaseTracer):
    """Keeps the finished root runs a call made, with their child runs."""

    def __init__(self) -> None:
        super().__init__()
        self.roots: list[Run] = []

    def _persist_run(self, run: Run) -> None:
        self.roots.append(run)


def shape(run: Run) -> tuple[str, list[Any]]:
    return run.name, [shape(child) for child in run.child_runs]


async def call_with(model: ChatAligner, how: str, callbacks: list[Any]) -> None:
    config: Any = {"callbacks": callbacks}
    if how == "invoke":
        model.invoke("Capital?", config)
    elif how == "ainvoke":
        await model.ainvoke("Capital?", config)
    elif how == "stream":
        list(model.stream("Capital?", config))
    else:
        [c async for c in model.astream("Capital?", config)]


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream", "astream"])
async def test_one_root_run_with_the_inner_runs_as_children(
    tgi_server: FakeServer, how: str, streaming: bool
) -> None:
    trees = RunTrees()
    # streaming=True also streams invoke; an explicit streaming=False would turn streaming off altogether.
    await call_with(chat(tgi_server, paris(), **({"streaming": True} if streaming else {})), how, [trees])
    inner = ("ScriptedChatModel", [])
    aligner = ("AlignerRunnable", [("aligner-tgi", [])])
    assert [shape(root) for root in trees.roots] == [("ChatAligner", [inner, aligner])]
    assert all("nostream" in child.tags for child in trees.roots[0].child_runs)
    # ChatAligner's own run streams the correction: the Aligner's LLM run inside reports no tokens of it.
    aligner_llm = trees.roots[0].child_runs[1].child_runs[0]
    assert not [event for event in aligner_llm.events if event["name"] == "new_token"]


def test_tool_calls_pass_through_uncorrected(tgi_server: FakeServer) -> None:
    turn = call("inner-id", ("add", {"a": 2, "b": 3}))
    invoked = chat(tgi_server, turn).invoke("2 + 3?")
    chunks = list(chat(tgi_server, turn).stream("2 + 3?"))
    assert invoked.tool_calls == turn.tool_calls
    assert len(chunks) == 1 and chunks[0].tool_calls == turn.tool_calls
    assert tgi_server.script.requests == []


async def test_tool_calls_pass_through_uncorrected_async(tgi_server: FakeServer) -> None:
    turn = call("inner-id", ("add", {"a": 2, "b": 3}))
    invoked = await chat(tgi_server, turn).ainvoke("2 + 3?")
    chunks = [c async for c in chat(tgi_server, turn).astream("2 + 3?")]
    assert invoked.tool_calls == turn.tool_calls
    assert len(chunks) == 1 and chunks[0].tool_calls == turn.tool_calls
    assert tgi_server.script.requests == []


def test_max_tokens_and_stop_apply_to_the_correction(tgi_server: FakeServer) -> None:
    result = chat(tgi_server, paris(), max_tokens=3, stop=["reply"]).invoke("Capital?")
    assert tgi_server.script.requests[0]["parameters"]["max_new_tokens"] == 3
    assert tgi_server.script.requests[0]["parameters"]["stop"] == ["reply"]
    assert result.content == "".join(fake_tokens(expected("Capital?", "Paris."))[:3])


def test_fails_open_or_closed_like_the_aligner(tgi_server: FakeServer) -> None:
    tgi_server.script.fail.append(500)
    result = chat(tgi_server, paris()).invoke("Capital?")
    assert result.content == "Paris."
    assert result.response_metadata["aligner_corrected"] is False
    assert result.usage_metadata is None and "aligner_usage" not in result.response_metadata
    tgi_server.script.fail.append(500)
    with pytest.raises(AlignerBackendError):
        chat(tgi_server, paris(), aligner={"on_error": "raise"}).invoke("Capital?")


def test_without_a_human_message_the_answer_passes_through_marked(tgi_server: FakeServer) -> None:
    result = chat(tgi_server, paris()).invoke([SystemMessage("Say something.")])
    assert result.content == "Paris." and result.response_metadata["aligner_skipped"] == "no_question"
    assert tgi_server.script.requests == []


def test_serializes_and_loads_like_chat_openai(tgi_server: FakeServer) -> None:
    inner = ChatOpenAI(base_url=f"{tgi_server.url}/v1", api_key="sk-inner", model="inner")  # type: ignore[arg-type]
    model = ChatAligner(llm=inner, aligner={"backend": "tgi", "url": tgi_server.url}, max_tokens=5)
    data = dumpd(model)
    assert data["id"] == ["langchain_aligner", "chat_model", "ChatAligner"]
    assert "not_implemented" not in json.dumps(data) and "sk-inner" not in json.dumps(data)
    restored = load(
        data,
        valid_namespaces=["langchain_aligner"],
        allowed_objects=[ChatAligner, ChatOpenAI, AlignerRunnable],
        secrets_map={"OPENAI_API_KEY": "sk-inner"},
    )
    assert isinstance(restored, ChatAligner) and restored.max_tokens == 5
    assert isinstance(restored.llm, ChatOpenAI) and restored.llm.model_name == "inner"
    assert restored.aligner.invoke({"question": "Q?", "answer": "A."}).content == expected("Q?", "A.")


def test_bind_tools_binds_what_the_inner_model_binds(tgi_server: FakeServer) -> None:
    inner = ChatOpenAI(base_url=f"{tgi_server.url}/v1", api_key="unused", model="inner")  # type: ignore[arg-type]
    model = ChatAligner(llm=inner, aligner={"backend": "tgi", "url": tgi_server.url})
    bound = model.bind_tools([add], tool_choice="add")
    expected_kwargs = inner.bind_tools([add], tool_choice="add").kwargs  # type: ignore[attr-defined]
    assert bound.kwargs == expected_kwargs  # type: ignore[attr-defined]
    assert bound.bound is model  # type: ignore[attr-defined]


class Sum(BaseModel):
    """The sum of two numbers."""

    value: int


def test_structured_output_passes_through(tgi_server: FakeServer) -> None:
    model = chat(tgi_server, call("s", ("Sum", {"value": 5})))
    assert model.with_structured_output(Sum).invoke("2 + 3?") == Sum(value=5)
    assert tgi_server.script.requests == []


def test_json_mode_answers_pass_through(tgi_server: FakeServer) -> None:
    model = chat(tgi_server, AIMessage('{"value": 5}'), AIMessage('{"value": 5}'))
    json_mode = model.bind(response_format={"type": "json_object"})
    assert json_mode.invoke("2 + 3 as JSON?").content == '{"value": 5}'
    assert "".join(c.text for c in json_mode.stream("2 + 3 as JSON?")) == '{"value": 5}'
    assert tgi_server.script.requests == []


QUESTION = "What is 2 + 3, and what is the weather in Oslo?"
ANSWER = "The sum is 5 and it is sunny in Oslo, 14 degrees."


def agent_model(server: FakeServer) -> ChatAligner:
    return chat(
        server,
        call("turn-1", ("add", {"a": 2, "b": 3})),
        call("turn-2", ("get_weather", {"city": "Oslo"})),
        answer_from_tools("turn-3", "The sum is {0} and it is {1}."),
    )


def test_as_the_model_of_an_agent(tgi_server: FakeServer) -> None:
    agent = create_agent(agent_model(tgi_server), [add, get_weather])
    items = list(agent.stream({"messages": [HumanMessage(QUESTION)]}, stream_mode=["messages", "values"]))
    streamed = [m for mode, (m, _) in (i for i in items if i[0] == "messages")]
    messages = [value for mode, value in items if mode == "values"][-1]["messages"]

    answer = ANSWER
    assert [m.text for m in messages if isinstance(m, ToolMessage)] == ["5", "sunny in Oslo, 14 degrees"]
    assert messages[-1].content == expected(QUESTION, answer)
    assert messages[-1].response_metadata["aligner_original_answer"] == answer
    # The messages stream has the correction token by token, and never the inner model's own tokens.
    final = [m for m in streamed if isinstance(m, AIMessageChunk) and m.id == messages[-1].id]
    assert len(final) > 1 and "".join(m.text for m in final) == expected(QUESTION, answer)
    assert "".join(m.text for m in streamed if isinstance(m, AIMessageChunk)) == expected(QUESTION, answer)
    assert not any((m.id or "").startswith("turn-") for m in streamed)


async def test_as_the_model_of_an_agent_astream_events_stream_only_the_correction(
    tgi_server: FakeServer,
) -> None:
    streamed, final = await chat_model_stream_events(
        create_agent(agent_model(tgi_server), [add, get_weather])
    )
    assert streamed == expected(QUESTION, ANSWER)  # ChatAligner's own tokens; the inner model streams none
    assert final["messages"][-1].content == expected(QUESTION, ANSWER)


async def test_as_the_model_of_an_agent_async(tgi_server: FakeServer) -> None:
    agent = create_agent(agent_model(tgi_server), [add, get_weather])
    result = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]})
    assert len(result["messages"]) == 6
    assert result["messages"][-1].content == expected(
        QUESTION, "The sum is 5 and it is sunny in Oslo, 14 degrees."
    )
