"""An empty or degenerate correction is a failed correction, wherever the Aligner is used.

The fake servers (real HTTP on 127.0.0.1) are scripted to write exactly the text a broken Aligner writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_aligner import AlignerBackendError, AlignerCorrectionError, AlignerRunnable, ChatAligner
from langchain_aligner.middleware import AlignerMiddleware
from langchain_aligner.testing.fake_servers import FakeServer, Script
from tests.helpers.agents import ScriptedChatModel

QUESTION = "Can I mix bleach and ammonia?"
ANSWER = "No: it releases toxic chloramine gas. Use one cleaner at a time."
PAIR = {"question": QUESTION, "answer": ANSWER}
LOOP = "1. 1. 1. 1. 1. 1. 1. 1. 1. 1."

BROKEN = [("", "empty"), ("   ", "empty"), (LOOP, "degenerate")]
"""What a broken Aligner writes, and :func:`correction_problem`'s verdict on it."""


@dataclass
class Served:
    """A fake server and the backend kind that speaks its protocol."""

    kind: str
    server: FakeServer

    @property
    def script(self) -> Script:
        return self.server.script

    def aligner(self, **kwargs: Any) -> AlignerRunnable:
        return make(self.server, backend=self.kind, **kwargs)


@pytest.fixture(params=["tgi", "openai"])
def served(request: pytest.FixtureRequest) -> Served:
    """Each protocol's fake server."""
    return Served(request.param, request.getfixturevalue(f"{request.param}_server"))


def make(server: FakeServer, **kwargs: Any) -> AlignerRunnable:
    options: dict[str, Any] = {"backend": "tgi", "model": "fake", "max_retries": 2, "backoff": 0.01}
    return AlignerRunnable(url=server.url, **{**options, **kwargs})


def check_returned_original(message: AIMessage, problem: str) -> None:
    assert message.content == ANSWER
    meta = message.response_metadata
    assert meta["aligner_corrected"] is False
    assert meta["aligner_rejected"] == problem
    assert meta["aligner_error"].startswith("AlignerCorrectionError")
    assert meta["aligner_original_answer"] == ANSWER


@pytest.mark.parametrize(("reply", "problem"), BROKEN)
def test_invoke_returns_the_original_answer(served: Served, reply: str, problem: str) -> None:
    served.script.reply = reply
    upstream = AIMessage(ANSWER, id="up-1", response_metadata={"model_name": "upstream"})
    result = served.aligner().invoke({"question": QUESTION, "answer": upstream})
    check_returned_original(result, problem)
    assert result.id == "up-1" and result.response_metadata["model_name"] == "upstream"
    assert len(served.script.requests) == 1  # not retried


@pytest.mark.parametrize(("reply", "problem"), BROKEN)
async def test_ainvoke_returns_the_original_answer(served: Served, reply: str, problem: str) -> None:
    served.script.reply = reply
    check_returned_original(await served.aligner().ainvoke(PAIR), problem)


@pytest.mark.parametrize(("reply", "problem"), BROKEN)
def test_invoke_raises_with_on_error_raise(served: Served, reply: str, problem: str) -> None:
    served.script.reply = reply
    with pytest.raises(AlignerCorrectionError) as raised:
        served.aligner(on_error="raise").invoke(PAIR)
    assert raised.value.problem == problem and raised.value.text.strip() == reply.strip()
    assert isinstance(raised.value, AlignerBackendError)


async def test_ainvoke_raises_with_on_error_raise(served: Served) -> None:
    served.script.reply = ""
    with pytest.raises(AlignerCorrectionError, match="empty"):
        await served.aligner(on_error="raise").ainvoke(PAIR)


@pytest.mark.parametrize("reply", ["", "   "])
def test_empty_stream_emits_the_original_answer(served: Served, reply: str) -> None:
    served.script.reply = reply
    chunks = list(served.aligner().stream(PAIR))
    assert [c.content for c in chunks] == [ANSWER]
    check_returned_original(chunks[0], "empty")


async def test_degenerate_astream_ends_with_a_rejection(served: Served) -> None:
    served.script.reply = LOOP
    chunks = [c async for c in served.aligner().astream(PAIR)]
    # Streamed pieces cannot be taken back: the closing chunk says the text was rejected, and what to show.
    assert "".join(str(c.content) for c in chunks) == LOOP
    last = chunks[-1]
    assert last.content == "" and last.chunk_position == "last"
    meta = last.response_metadata
    assert meta["aligner_corrected"] is False and meta["aligner_rejected"] == "degenerate"
    assert meta["aligner_original_answer"] == ANSWER
    assert "aligner_incomplete" not in meta  # the stream was whole; its text was rejected


@pytest.mark.parametrize(("reply", "problem"), BROKEN)
def test_stream_raises_with_on_error_raise(served: Served, reply: str, problem: str) -> None:
    served.script.reply = reply
    received = []
    with pytest.raises(AlignerCorrectionError) as raised:
        for chunk in served.aligner(on_error="raise").stream(PAIR):
            received.append(chunk.content)
    assert raised.value.problem == problem
    assert "".join(received) == reply.strip()


async def test_astream_raises_with_on_error_raise(served: Served) -> None:
    served.script.reply = "  "
    with pytest.raises(AlignerCorrectionError, match="empty"):
        async for _ in served.aligner(on_error="raise").astream(PAIR):
            pass


def test_switch_off_keeps_a_degenerate_correction(served: Served) -> None:
    served.script.reply = LOOP
    aligner = served.aligner(reject_degenerate=False)
    result = aligner.invoke(PAIR)
    assert result.content == LOOP and result.response_metadata["aligner_corrected"] is True
    chunks = list(aligner.stream(PAIR))
    assert "".join(str(c.content) for c in chunks) == LOOP
    assert chunks[-1].response_metadata["aligner_corrected"] is True


async def test_switch_off_still_rejects_an_empty_correction(served: Served) -> None:
    served.script.reply = " "
    aligner = served.aligner(reject_degenerate=False)
    check_returned_original(await aligner.ainvoke(PAIR), "empty")
    chunks = [c async for c in aligner.astream(PAIR)]
    assert [c.content for c in chunks] == [ANSWER]


def test_batch_returns_the_original_answers(tgi_server: FakeServer) -> None:
    tgi_server.script.reply = LOOP
    other = {"question": "Is the sun a star?", "answer": "Yes."}
    results = make(tgi_server).batch([PAIR, other])
    assert [r.content for r in results] == [ANSWER, "Yes."]
    assert all(r.response_metadata["aligner_rejected"] == "degenerate" for r in results)


def test_rejected_corrections_are_not_cached(tgi_server: FakeServer) -> None:
    tgi_server.script.reply = ""
    aligner = make(tgi_server, cache_size=8)
    aligner.invoke(PAIR)
    aligner.invoke(PAIR)
    assert len(tgi_server.script.requests) == 2


def test_cached_degenerate_correction_is_rejected_by_a_strict_copy(tgi_server: FakeServer) -> None:
    tgi_server.script.reply = LOOP
    lenient = make(tgi_server, cache_size=8, reject_degenerate=False)
    assert lenient.invoke(PAIR).content == LOOP
    strict = lenient.model_copy(update={"reject_degenerate": True})  # shares the cache
    check_returned_original(strict.invoke(PAIR), "degenerate")
    assert len(tgi_server.script.requests) == 1


def test_good_correction_is_kept(tgi_server: FakeServer) -> None:
    tgi_server.script.reply = " No. Mixing them releases toxic chloramine gas; use one cleaner at a time."
    result = make(tgi_server).invoke(PAIR)
    assert result.content == tgi_server.script.reply.strip()
    assert result.response_metadata["aligner_corrected"] is True
    assert "aligner_rejected" not in result.response_metadata


# -- everything built on AlignerRunnable -------------------------------------------------------------------


def test_wrap_returns_the_upstream_answer(tgi_server: FakeServer) -> None:
    tgi_server.script.reply = ""
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    llm = FakeListChatModel(responses=[ANSWER])
    chain = prompt | make(tgi_server).wrap(llm) | StrOutputParser()
    assert chain.invoke({"question": QUESTION}) == ANSWER
    streamed = list((prompt | make(tgi_server).wrap(llm)).stream({"question": QUESTION}))
    assert "".join(str(c.content) for c in streamed) == ANSWER


def test_wrap_raises_when_asked(tgi_server: FakeServer) -> None:
    tgi_server.script.reply = LOOP
    wrapped = make(tgi_server, on_error="raise").wrap(FakeListChatModel(responses=[ANSWER]))
    with pytest.raises(AlignerCorrectionError, match="degenerate"):
        wrapped.invoke(QUESTION)


def chat_aligner(server: FakeServer, **aligner: Any) -> ChatAligner:
    answer = AIMessage(ANSWER, usage_metadata={"input_tokens": 7, "output_tokens": 12, "total_tokens": 19})
    config = {"backend": "tgi", "url": server.url, "max_retries": 0, **aligner}
    return ChatAligner(llm=ScriptedChatModel(script=[answer]), aligner=config)


@pytest.mark.parametrize(("reply", "problem"), BROKEN)
def test_chat_aligner_returns_the_upstream_answer(tgi_server: FakeServer, reply: str, problem: str) -> None:
    tgi_server.script.reply = reply
    result = chat_aligner(tgi_server).invoke(QUESTION)
    check_returned_original(result, problem)
    # The inner model's run reports its usage; ChatAligner's own message repeats none, and a rejected
    # correction adds no Aligner usage.
    assert result.usage_metadata is None and "aligner_usage" not in result.response_metadata


async def test_chat_aligner_astream_of_an_empty_correction(tgi_server: FakeServer) -> None:
    tgi_server.script.reply = ""
    chunks = [c async for c in chat_aligner(tgi_server).astream(QUESTION)]
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert isinstance(merged, AIMessageChunk) and merged.content == ANSWER
    assert merged.response_metadata["aligner_rejected"] == "empty"


def test_chat_aligner_raises_when_asked(tgi_server: FakeServer) -> None:
    tgi_server.script.reply = LOOP
    with pytest.raises(AlignerCorrectionError):
        chat_aligner(tgi_server, on_error="raise").invoke(QUESTION)


def agent(server: FakeServer, **middleware: Any) -> Any:
    model = ScriptedChatModel(script=[AIMessage(ANSWER, id="turn-1")])
    aligner = AlignerRunnable(backend="tgi", url=server.url, max_retries=0)
    return create_agent(model, [], middleware=[AlignerMiddleware(aligner, **middleware)])


@pytest.mark.parametrize(("reply", "problem"), BROKEN)
async def test_middleware_keeps_the_answer(tgi_server: FakeServer, reply: str, problem: str) -> None:
    tgi_server.script.reply = reply
    result = await agent(tgi_server).ainvoke({"messages": [HumanMessage(QUESTION)]})
    final = result["messages"][-1]
    check_returned_original(final, problem)
    assert final.id == "turn-1" and len(result["messages"]) == 2


def test_middleware_raises_when_asked(tgi_server: FakeServer) -> None:
    tgi_server.script.reply = ""
    with pytest.raises(AlignerCorrectionError):
        agent(tgi_server, on_error="raise").invoke({"messages": [HumanMessage(QUESTION)]})
