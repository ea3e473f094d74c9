"""The correction policy through its callers, with an Aligner served over HTTP (the fake TGI server): wrap,
ChatAligner and the middleware correct the same messages, and outcomes read back from the Aligner's output."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage

from langchain_aligner import AlignerMiddleware, AlignerRunnable, ChatAligner
from langchain_aligner.correction import CorrectionOutcome
from langchain_aligner.testing.fake_servers import FakeServer, fake_aligner_reply
from tests.helpers.agents import ScriptedChatModel
from tests.helpers.correction import ANSWER, CORRECTED, MESSAGES, QUESTION


def aligner(server: FakeServer, **kwargs: Any) -> AlignerRunnable:
    return AlignerRunnable(backend="tgi", url=server.url, max_retries=0, **kwargs)


def corrected_by_wrap(server: FakeServer, message: AIMessage) -> AIMessage:
    return aligner(server).wrap(FakeMessagesListChatModel(responses=[message])).invoke(QUESTION)


def corrected_by_chat_aligner(server: FakeServer, message: AIMessage) -> AIMessage:
    return ChatAligner(llm=ScriptedChatModel(script=[message]), aligner=aligner(server)).invoke(QUESTION)


def corrected_by_middleware(server: FakeServer, message: AIMessage, correct: str = "final") -> AIMessage:
    middleware = AlignerMiddleware(aligner(server), correct=correct)  # type: ignore[arg-type]
    agent = create_agent(ScriptedChatModel(script=[message]), [], middleware=[middleware])
    return agent.invoke({"messages": [HumanMessage(QUESTION)]})["messages"][-1]


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
