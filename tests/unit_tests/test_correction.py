"""The correction policy (langchain_aligner.correction) and the callers that route through it: what is
corrected, against which question, and what happened to an answer, the same for wrap, ChatAligner and the
middleware."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.prompt_values import ChatPromptValue

from langchain_aligner import AlignerMiddleware, AlignerRunnable, ChatAligner
from langchain_aligner.correction import (
    CorrectionOutcome,
    correction_input,
    is_correctable,
    pair_input,
    rejection,
)
from langchain_aligner.testing.fake_servers import FakeServer, fake_aligner_reply
from tests.helpers.agents import ScriptedChatModel

QUESTION = "Is it safe to mix bleach and ammonia?"
ANSWER = "Sure, it cleans better."
CALL = {"name": "lookup", "args": {"term": "bleach"}, "id": "call-1", "type": "tool_call"}

MESSAGES = {
    "text": AIMessage(ANSWER, id="m"),
    "empty text": AIMessage("", id="m"),
    "white space": AIMessage("  \n", id="m"),
    "tool call": AIMessage("", id="m", tool_calls=[CALL]),
    "text beside a tool call": AIMessage(ANSWER, id="m", tool_calls=[CALL]),
}
CORRECTED = {"text"}
CORRECTED_WITH_TOOL_CALLS = {"text", "text beside a tool call"}


@pytest.mark.parametrize("kind", MESSAGES)
def test_what_is_correctable(kind: str) -> None:
    assert is_correctable(MESSAGES[kind]) is (kind in CORRECTED)
    assert is_correctable(MESSAGES[kind], with_tool_calls=True) is (kind in CORRECTED_WITH_TOOL_CALLS)
    assert not is_correctable(HumanMessage(ANSWER))


def test_the_question_is_the_last_human_turn_of_any_input_shape() -> None:
    answer = AIMessage(ANSWER)
    conversation = [
        HumanMessage("Hi"),
        AIMessage("Hello!"),
        SystemMessage("Be brief."),
        HumanMessage(QUESTION),
    ]
    expected = [HumanMessage(QUESTION), answer]
    assert correction_input(conversation, answer) == expected
    assert correction_input(ChatPromptValue(messages=conversation), answer) == expected
    assert correction_input([("human", "Hi"), ("human", QUESTION)], answer) == expected
    assert correction_input(QUESTION, answer) == expected
    assert correction_input([SystemMessage("Be brief.")], answer) == [answer]


def test_a_pair_goes_under_the_aligners_own_keys() -> None:
    aligner = AlignerRunnable(backend="tgi", url="http://127.0.0.1:9", question_key="q", answer_key="a")
    assert pair_input(aligner, QUESTION, ANSWER) == {"q": QUESTION, "a": ANSWER}


def test_rejection() -> None:
    assert rejection(" \n", reject_degenerate=False) == "empty"
    loop = "1. " * 40
    assert rejection(loop, reject_degenerate=True) == "degenerate"
    assert rejection(loop, reject_degenerate=False) is None
    assert rejection("Never mix them.", reject_degenerate=True) is None


def aligner(server: FakeServer, **kwargs: Any) -> AlignerRunnable:
    return AlignerRunnable(backend="tgi", url=server.url, max_retries=0, **kwargs)


def test_outcomes_read_back_from_the_aligners_output(tgi_server: FakeServer) -> None:
    pair = {"question": QUESTION, "answer": ANSWER}
    corrected = CorrectionOutcome.of(aligner(tgi_server).invoke(pair))
    assert corrected == CorrectionOutcome(original=ANSWER, corrected=True)
    skipped = CorrectionOutcome.of(aligner(tgi_server, skip_if=lambda q, a: True).invoke(pair))
    assert skipped == CorrectionOutcome(original=ANSWER, corrected=False, skipped="skip_if")
    tgi_server.script.reply = ""
    rejected = CorrectionOutcome.of(aligner(tgi_server).invoke(pair))
    assert not rejected.corrected and rejected.error is not None and "empty" in rejected.error
    with pytest.raises(ValueError, match="aligner_original_answer"):
        CorrectionOutcome.of(AIMessage(ANSWER))


def corrected_by_wrap(server: FakeServer, message: AIMessage) -> AIMessage:
    return aligner(server).wrap(FakeMessagesListChatModel(responses=[message])).invoke(QUESTION)


def corrected_by_chat_aligner(server: FakeServer, message: AIMessage) -> AIMessage:
    return ChatAligner(llm=ScriptedChatModel(script=[message]), aligner=aligner(server)).invoke(QUESTION)


def corrected_by_middleware(server: FakeServer, message: AIMessage, correct: str = "final") -> AIMessage:
    middleware = AlignerMiddleware(aligner(server), correct=correct)  # type: ignore[arg-type]
    agent = create_agent(ScriptedChatModel(script=[message]), [], middleware=[middleware])
    return agent.invoke({"messages": [HumanMessage(QUESTION)]})["messages"][-1]


@pytest.mark.parametrize("caller", [corrected_by_wrap, corrected_by_chat_aligner, corrected_by_middleware])
@pytest.mark.parametrize("kind", MESSAGES)
def test_wrap_chat_aligner_and_middleware_correct_the_same_messages(
    tgi_server: FakeServer, caller: Any, kind: str
) -> None:
    message = MESSAGES[kind]
    result = caller(tgi_server, message)
    if kind in CORRECTED:
        assert result.content == fake_aligner_reply(QUESTION, ANSWER)
        assert CorrectionOutcome.of(result).corrected
    else:  # untouched, and the Aligner never asked (an empty answer used to fail wrap with an input error)
        assert result.content == message.content and result.tool_calls == message.tool_calls
        assert tgi_server.script.requests == []


def test_the_middleware_corrects_text_beside_tool_calls_when_asked(tgi_server: FakeServer) -> None:
    message = MESSAGES["text beside a tool call"]
    result = corrected_by_middleware(tgi_server, message, correct="all")
    assert result.content == fake_aligner_reply(QUESTION, ANSWER) and result.tool_calls == message.tool_calls
