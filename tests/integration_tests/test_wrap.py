"""aligner.wrap(llm) / with_aligner and the LCEL compositions the README promises, with fake chat models."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel, FakeMessagesListChatModel, GenericFakeChatModel
from langchain_core.load import dumpd, load
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import (
    ChatPromptTemplate,
    HumanMessagePromptTemplate,
    PromptTemplate,
    SystemMessagePromptTemplate,
)
from langchain_core.runnables import Runnable, RunnablePassthrough, RunnableSequence
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai import ChatOpenAI

from langchain_aligner import AlignedChatModel, AlignerRunnable, with_aligner
from langchain_aligner.testing.fake_servers import FakeServer, fake_aligner_reply
from tests.helpers import agents

PROMPT = ChatPromptTemplate.from_messages([("system", "You are terse."), ("human", "{question}")])
QUESTION = "Is it fine to leave a candle burning overnight?"
ANSWER = "Sure, candles are harmless."


def expected(question: str = QUESTION, answer: str = ANSWER) -> str:
    return fake_aligner_reply(question, answer)


@pytest.fixture
def aligner(tgi_server: FakeServer) -> AlignerRunnable:
    return AlignerRunnable(backend="tgi", url=tgi_server.url, backoff=0.01)


@tool
def lookup(term: str) -> str:
    """Look a term up."""
    return term


def test_prompt_wrap_parser_chain(aligner: AlignerRunnable) -> None:
    chain = PROMPT | aligner.wrap(FakeListChatModel(responses=[ANSWER])) | StrOutputParser()
    assert chain.invoke({"question": QUESTION}) == expected()


def test_passthrough_assign_then_aligner(aligner: AlignerRunnable) -> None:
    chain = RunnablePassthrough.assign(answer=PROMPT | FakeListChatModel(responses=[ANSWER])) | aligner
    result = chain.invoke({"question": QUESTION})
    assert result.content == expected()
    assert result.response_metadata["aligner_original_answer"] == ANSWER


def test_str_input_is_the_question(aligner: AlignerRunnable) -> None:
    wrapped = with_aligner(FakeListChatModel(responses=[ANSWER]), aligner)
    assert wrapped.invoke(QUESTION).content == expected()


def test_tool_calls_pass_through_unchanged(aligner: AlignerRunnable, tgi_server: FakeServer) -> None:
    call = AIMessage("", tool_calls=[{"name": "lookup", "args": {"term": "x"}, "id": "call-1"}])
    wrapped = aligner.wrap(FakeMessagesListChatModel(responses=[call]))
    result = wrapped.invoke(QUESTION)
    assert result.tool_calls == call.tool_calls
    assert tgi_server.script.requests == []


def test_stream_streams_the_correction(aligner: AlignerRunnable) -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage(ANSWER)]))
    chunks = list((PROMPT | aligner.wrap(model)).stream({"question": QUESTION}))
    assert len(chunks) > 2
    assert "".join(str(c.content) for c in chunks) == expected()


async def test_astream_and_ainvoke(aligner: AlignerRunnable) -> None:
    wrapped = aligner.wrap(FakeListChatModel(responses=[ANSWER, ANSWER]))
    assert (await wrapped.ainvoke(QUESTION)).content == expected()
    chunks = [c async for c in wrapped.astream(QUESTION)]
    assert "".join(str(c.content) for c in chunks) == expected()


class ToolCallingFakeChatModel(GenericFakeChatModel):
    """A fake chat model with ``bind_tools``, as real chat models have."""

    def bind_tools(self, tools: list[Any], **kwargs: Any) -> Runnable:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


def test_bind_tools_is_forwarded_and_stays_wrapped(aligner: AlignerRunnable) -> None:
    model = ToolCallingFakeChatModel(messages=iter([AIMessage(ANSWER)]))
    bound = aligner.wrap(model).bind_tools([lookup])
    assert isinstance(bound, AlignedChatModel)
    assert bound.chat_model.kwargs["tools"][0]["function"]["name"] == "lookup"  # type: ignore[attr-defined]
    assert bound.invoke(QUESTION).content == expected()


def test_attributes_are_forwarded(aligner: AlignerRunnable) -> None:
    model = FakeListChatModel(responses=[ANSWER])
    assert aligner.wrap(model).responses == [ANSWER]
    with pytest.raises(NotImplementedError, match="free-text"):
        aligner.wrap(model).with_structured_output(dict)


@pytest.mark.parametrize(
    "value",
    [
        [("system", "You are terse.")],
        [HumanMessage(content=[{"type": "image", "url": "https://x.test/a.png"}])],
    ],
)
def test_input_without_a_text_question_passes_through_marked(
    aligner: AlignerRunnable, tgi_server: FakeServer, value: list
) -> None:
    wrapped = aligner.wrap(FakeListChatModel(responses=[ANSWER]))
    for result in (wrapped.invoke(value), list(wrapped.stream(value))[-1]):
        assert result.content == ANSWER
        assert result.response_metadata["aligner_skipped"] == "no_question"
    assert tgi_server.script.requests == []


def test_custom_keys_do_not_break_wrap(tgi_server: FakeServer) -> None:
    aligner = AlignerRunnable(backend="tgi", url=tgi_server.url, question_key="q", answer_key="a")
    assert aligner.wrap(FakeListChatModel(responses=[ANSWER])).invoke(QUESTION).content == expected()


def wrapped_agent(aligner: AlignerRunnable) -> Any:
    from langchain.agents import create_agent

    return create_agent(aligner.wrap(agents.three_turns()), [agents.add, agents.get_weather])


def test_agent_streams_messages_only_corrected(aligner: AlignerRunnable) -> None:
    # The model's raw tokens stay out; each turn arrives whole, the answer as its correction.
    agents.check_messages_stream(agents.messages_stream(wrapped_agent(aligner)))


async def test_agent_astream_events_stream_no_uncorrected_text(aligner: AlignerRunnable) -> None:
    streamed, final = await agents.chat_model_stream_events(wrapped_agent(aligner))
    assert streamed == ""  # the wrapped model is not asked to stream: its answer is corrected first
    assert final["messages"][-1].content == expected(agents.QUESTION, agents.ANSWER)


def test_a_chain_with_wrap_serializes_and_loads(aligner: AlignerRunnable, tgi_server: FakeServer) -> None:
    llm = ChatOpenAI(model="upstream", base_url=f"{tgi_server.url}/v1", api_key="sk-upstream")  # type: ignore[arg-type]
    data = dumpd(PROMPT | aligner.wrap(llm))
    assert "not_implemented" not in json.dumps(data)
    assert "sk-upstream" not in json.dumps(data)
    allowed = [
        RunnableSequence,
        ChatPromptTemplate,
        SystemMessagePromptTemplate,
        HumanMessagePromptTemplate,
        PromptTemplate,
        ChatOpenAI,
        AlignedChatModel,
        AlignerRunnable,
    ]
    secrets = {"OPENAI_API_KEY": "sk-upstream"}
    chain = load(data, valid_namespaces=["langchain_aligner"], allowed_objects=allowed, secrets_map=secrets)
    wrapped = chain.last
    assert isinstance(wrapped, AlignedChatModel) and isinstance(wrapped.chat_model, ChatOpenAI)
    assert wrapped.chat_model.model_name == "upstream"
    assert wrapped.aligner.invoke({"question": QUESTION, "answer": ANSWER}).content == expected()
