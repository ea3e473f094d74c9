"""AlignerRunnable against the fake TGI server: input shapes, output message, metadata, streaming."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.prompt_values import ChatPromptValue

from langchain_aligner import ALIGNER_V1, AlignerInputError, AlignerRunnable
from langchain_aligner.testing.fake_servers import FakeServer, fake_aligner_reply, fake_tokens

QUESTION = "How do I store cleaning products safely?"
ANSWER = "Mix them all in one bottle."


def expected(question: str = QUESTION, answer: str = ANSWER) -> str:
    return fake_aligner_reply(question, answer)


@pytest.fixture
def aligner(tgi_server: FakeServer) -> AlignerRunnable:
    return AlignerRunnable(backend="tgi", url=tgi_server.url, backoff=0.01)


def test_dict_input_is_corrected_with_the_official_template(
    aligner: AlignerRunnable, tgi_server: FakeServer
) -> None:
    result = aligner.invoke({"question": QUESTION, "answer": ANSWER})
    assert isinstance(result, AIMessage)
    assert result.content == expected()
    (request,) = tgi_server.script.requests
    assert request["inputs"] == ALIGNER_V1.format(QUESTION, ANSWER)
    assert request["parameters"]["do_sample"] is False
    meta = result.response_metadata
    assert meta["aligner_corrected"] is True
    assert meta["aligner_original_answer"] == ANSWER
    assert meta["aligner_backend"] == "tgi"
    assert meta["aligner_model"] == "fake/aligner-7b"
    assert meta["aligner_latency_ms"] > 0
    assert meta["token_usage"]["completion_tokens"] == len(fake_tokens(expected()))


@pytest.mark.parametrize(
    "value",
    [
        [HumanMessage(QUESTION), AIMessage(ANSWER, id="upstream-1")],
        [SystemMessage("Be brief."), ("human", QUESTION), ("ai", ANSWER)],
        ChatPromptValue(messages=[HumanMessage(QUESTION), AIMessage(ANSWER)]),
        {"question": HumanMessage(QUESTION), "answer": AIMessage(ANSWER), "extra": 1},
    ],
)
def test_message_shapes_give_the_same_correction(aligner: AlignerRunnable, value: object) -> None:
    assert aligner.invoke(value).content == expected()


def test_ai_message_keeps_its_id(tgi_server: FakeServer) -> None:
    aligner = AlignerRunnable(backend="tgi", url=tgi_server.url, default_question=QUESTION)
    result = aligner.invoke(AIMessage(ANSWER, id="run-42"))
    assert result.id == "run-42"
    assert result.content == expected()


def test_str_answer_uses_default_question(tgi_server: FakeServer) -> None:
    aligner = AlignerRunnable(backend="tgi", url=tgi_server.url, default_question=QUESTION)
    assert aligner.invoke(ANSWER).content == expected()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (ANSWER, "carries no question"),
        ({"question": QUESTION, "answer": "  "}, "empty"),
        ({"question": QUESTION}, "no 'answer' key"),
        ({"answer": ANSWER}, "no 'question' key"),
        ({"question": QUESTION, "answer": 42}, "must be a str or a message"),
        (12, "cannot correct a int"),
        ([HumanMessage(QUESTION)], "no AI message"),
    ],
)
def test_bad_input_raises_a_clear_error(aligner: AlignerRunnable, value: object, message: str) -> None:
    with pytest.raises(AlignerInputError, match=message):
        aligner.invoke(value)


async def test_ainvoke_matches_invoke(aligner: AlignerRunnable) -> None:
    result = await aligner.ainvoke({"question": QUESTION, "answer": ANSWER})
    assert result.content == expected()


def test_stream_yields_the_correction_piece_by_piece(aligner: AlignerRunnable) -> None:
    chunks = list(aligner.stream({"question": QUESTION, "answer": ANSWER}))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert [c.content for c in chunks[:-1]] == fake_tokens(expected())
    total = sum(chunks[1:], chunks[0])
    assert total.content == expected()
    assert total.response_metadata["aligner_corrected"] is True
    prompt_tokens = 1 + len(fake_tokens(ALIGNER_V1.format(QUESTION, ANSWER)))
    assert total.usage_metadata == {
        "input_tokens": prompt_tokens,
        "output_tokens": len(fake_tokens(expected())),
        "total_tokens": prompt_tokens + len(fake_tokens(expected())),
    }
    assert len({c.id for c in chunks}) == 1


async def test_astream_matches_stream(aligner: AlignerRunnable) -> None:
    chunks = [c async for c in aligner.astream({"question": QUESTION, "answer": ANSWER})]
    assert "".join(str(c.content) for c in chunks) == expected()
    assert chunks[-1].response_metadata["aligner_corrected"] is True


def test_batch_and_abatch_keep_order(aligner: AlignerRunnable) -> None:
    inputs = [{"question": f"{QUESTION} {i}", "answer": ANSWER} for i in range(5)]
    assert [m.content for m in aligner.batch(inputs)] == [expected(f"{QUESTION} {i}") for i in range(5)]


IMAGE = {"type": "image", "url": "https://example.com/cat.png"}


@pytest.mark.parametrize(
    "value",
    [
        [SystemMessage("Be kind."), AIMessage(ANSWER, id="up-1")],  # no human turn
        [HumanMessage(content=[IMAGE]), AIMessage(ANSWER, id="up-1")],  # an image-only question
        {"question": HumanMessage(content=[IMAGE]), "answer": AIMessage(ANSWER, id="up-1")},
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
def test_an_answer_without_a_text_question_passes_through_marked(
    aligner: AlignerRunnable, tgi_server: FakeServer, value: object, streaming: bool
) -> None:
    result = list(aligner.stream(value))[-1] if streaming else aligner.invoke(value)
    assert result.content == ANSWER and result.id == "up-1"
    meta = result.response_metadata
    assert meta["aligner_corrected"] is False and meta["aligner_skipped"] == "no_question"
    assert tgi_server.script.requests == []


def test_default_question_stands_in_for_a_missing_human_turn(tgi_server: FakeServer) -> None:
    aligner = AlignerRunnable(backend="tgi", url=tgi_server.url, default_question=QUESTION)
    assert aligner.invoke([SystemMessage("Be kind."), AIMessage(ANSWER)]).content == expected()
