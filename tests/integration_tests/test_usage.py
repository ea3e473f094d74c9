"""Token usage by LangChain's conventions: ``usage_metadata`` on AI messages, and LangChain's usage callback
(``get_usage_metadata_callback``) keyed by model name, with the upstream model and the Aligner counted once
each, under their own names, for invoke and stream alike."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata

from langchain_aligner import AlignerMiddleware, AlignerRunnable, ChatAligner
from langchain_aligner.templates import ALIGNER_V1
from langchain_aligner.testing.fake_servers import MODEL_ID, FakeServer, fake_aligner_reply, fake_tokens
from tests.helpers.agents import ScriptedChatModel

QUESTION = "Capital of France?"
ANSWER = "Paris."
UPSTREAM = "scripted-upstream"
UPSTREAM_USAGE = UsageMetadata(input_tokens=7, output_tokens=2, total_tokens=9)


def aligner_usage(question: str = QUESTION, answer: str = ANSWER) -> UsageMetadata:
    """What the fake TGI server reports for the pair: its prompt with BOS, and the correction's tokens."""
    prompt = 1 + len(fake_tokens(ALIGNER_V1.format(question, answer)))
    completion = len(fake_tokens(fake_aligner_reply(question, answer)))
    return UsageMetadata(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)


def upstream() -> ScriptedChatModel:
    answer = AIMessage(ANSWER, usage_metadata=UPSTREAM_USAGE, response_metadata={"model_name": UPSTREAM})
    return ScriptedChatModel(script=[answer])


def aligner(server: FakeServer) -> AlignerRunnable:
    return AlignerRunnable(backend="tgi", url=server.url, max_retries=0)


def added(chunks: list[Any]) -> Any:
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


@pytest.mark.parametrize("how", ["invoke", "stream"])
def test_the_aligner_reports_its_usage_for_invoke_and_stream(tgi_server: FakeServer, how: str) -> None:
    pair = {"question": QUESTION, "answer": ANSWER}
    with get_usage_metadata_callback() as callback:
        runnable = aligner(tgi_server)
        message = runnable.invoke(pair) if how == "invoke" else added(list(runnable.stream(pair)))
    assert message.usage_metadata == aligner_usage()
    assert message.response_metadata["model_name"] == MODEL_ID
    assert callback.usage_metadata == {MODEL_ID: aligner_usage()}


def run(model: Any, how: str) -> Any:
    if how == "invoke":
        return model.invoke(QUESTION)
    return added(list(model.stream(QUESTION)))


@pytest.mark.parametrize("how", ["invoke", "stream"])
def test_wrap_keeps_the_upstream_usage_and_counts_each_model_once(tgi_server: FakeServer, how: str) -> None:
    with get_usage_metadata_callback() as callback:
        message = run(aligner(tgi_server).wrap(upstream()), how)
    assert message.content == fake_aligner_reply(QUESTION, ANSWER)
    assert message.usage_metadata == UPSTREAM_USAGE
    assert message.response_metadata["model_name"] == UPSTREAM
    assert message.response_metadata["aligner_usage"] == aligner_usage()
    assert callback.usage_metadata == {UPSTREAM: UPSTREAM_USAGE, MODEL_ID: aligner_usage()}


@pytest.mark.parametrize("how", ["invoke", "stream"])
def test_chat_aligner_counts_each_model_once(tgi_server: FakeServer, how: str) -> None:
    with get_usage_metadata_callback() as callback:
        message = run(ChatAligner(llm=upstream(), aligner=aligner(tgi_server)), how)
    assert message.content == fake_aligner_reply(QUESTION, ANSWER)
    # Its own run contains both models' runs, which report their usage: it reports none of its own.
    assert message.usage_metadata is None
    assert message.response_metadata["model_name"] == UPSTREAM
    assert message.response_metadata["aligner_usage"] == aligner_usage()
    assert callback.usage_metadata == {UPSTREAM: UPSTREAM_USAGE, MODEL_ID: aligner_usage()}


def test_middleware_keeps_the_upstream_usage_and_counts_each_model_once(tgi_server: FakeServer) -> None:
    agent = create_agent(upstream(), [], middleware=[AlignerMiddleware(aligner(tgi_server))])
    with get_usage_metadata_callback() as callback:
        final = agent.invoke({"messages": [HumanMessage(QUESTION)]})["messages"][-1]
    assert final.usage_metadata == UPSTREAM_USAGE
    assert final.response_metadata["model_name"] == UPSTREAM
    assert final.response_metadata["aligner_usage"] == aligner_usage()
    assert callback.usage_metadata == {UPSTREAM: UPSTREAM_USAGE, MODEL_ID: aligner_usage()}


def test_a_failed_correction_adds_no_aligner_usage(tgi_server: FakeServer) -> None:
    tgi_server.script.fail.append(500)
    with get_usage_metadata_callback() as callback:
        message = aligner(tgi_server).wrap(upstream()).invoke(QUESTION)
    assert message.content == ANSWER and message.response_metadata["aligner_corrected"] is False
    assert message.usage_metadata == UPSTREAM_USAGE and "aligner_usage" not in message.response_metadata
    assert callback.usage_metadata == {UPSTREAM: UPSTREAM_USAGE}
