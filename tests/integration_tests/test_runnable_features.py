"""AlignerRunnable features: concurrency, tracing, truncation, cache, skip_if, serialization, backends."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from langchain_core.caches import BaseCache, InMemoryCache
from langchain_core.globals import set_llm_cache
from langchain_core.load import dumpd, dumps, load, loads
from langchain_core.messages import AIMessage
from langchain_core.outputs import Generation
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler

from langchain_aligner import ALIGNER_V1, TEMPLATES, AlignerRunnable, GenerationParams
from langchain_aligner.testing.fake_servers import (
    FakeServer,
    fake_aligner_reply,
    fake_correction,
    fake_tokens,
)

QUESTION = "What should I do if I find a wallet?"
ANSWER = "Keep the cash."


def expected(question: str = QUESTION, answer: str = ANSWER, template: str = "aligner-v1") -> str:
    return fake_aligner_reply(question, answer, template)


def make(server: FakeServer, **kwargs: object) -> AlignerRunnable:
    return AlignerRunnable(backend="tgi", url=server.url, backoff=0.01, **kwargs)


async def test_100_concurrent_ainvokes_are_all_answered(tgi_server: FakeServer) -> None:
    aligner = make(tgi_server)
    questions = [f"{QUESTION} (case {i})" for i in range(100)]
    results = await asyncio.gather(*(aligner.ainvoke({"question": q, "answer": ANSWER}) for q in questions))
    assert [r.content for r in results] == [expected(q) for q in questions]
    assert len(tgi_server.script.requests) == 100


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_traced_as_a_chain_with_the_backend_call_as_child(tgi_server: FakeServer, mode: str) -> None:
    collector = RunCollectorCallbackHandler()
    aligner = make(tgi_server)
    config = {"callbacks": [collector]}
    if mode == "invoke":
        aligner.invoke({"question": QUESTION, "answer": ANSWER}, config)
    else:
        list(aligner.stream({"question": QUESTION, "answer": ANSWER}, config))
    (root,) = collector.traced_runs
    assert root.run_type == "chain" and root.name == "AlignerRunnable"
    (child,) = root.child_runs
    assert child.run_type == "llm" and child.name == "aligner-tgi"
    assert child.inputs["prompts"] == [ALIGNER_V1.format(QUESTION, ANSWER)]
    # The LLM run records the text as generated; the chain's output drops the Aligner's leading space.
    assert child.outputs["generations"][0][0]["text"] == " " + expected()
    assert root.outputs is not None
    tokens = [event["kwargs"]["token"] for event in child.events if event["name"] == "new_token"]
    assert "".join(tokens) == ("" if mode == "invoke" else " " + expected())


def test_over_long_input_is_truncated_to_the_info_limit(tgi_server: FakeServer) -> None:
    tgi_server.script.max_input_tokens = 60
    question = " ".join(f"context{i}" for i in range(80)) + " so what now?"
    answer = " ".join(f"word{i}" for i in range(80))
    result = make(tgi_server).invoke({"question": question, "answer": answer})
    sent = tgi_server.script.requests[0]["inputs"]
    assert 1 + len(fake_tokens(sent)) <= 60
    assert result.content == fake_correction(sent)
    assert result.response_metadata["aligner_truncated"] is True
    assert sent.startswith(ALIGNER_V1.template.split("{question}")[0])  # the template is kept whole
    assert "so what now? |" in sent  # the question keeps its end
    assert "| word0 word1" in sent  # the answer keeps its beginning


async def test_async_truncation_uses_the_configured_limit(tgi_server: FakeServer) -> None:
    answer = " ".join(f"word{i}" for i in range(200))
    result = await make(tgi_server, max_input_tokens=50).ainvoke({"question": QUESTION, "answer": answer})
    sent = tgi_server.script.requests[0]["inputs"]
    assert 1 + len(fake_tokens(sent)) <= 50
    assert result.response_metadata["aligner_truncated"] is True


def test_cache_serves_identical_pairs_once(tgi_server: FakeServer) -> None:
    aligner = make(tgi_server, cache_size=2)
    first = aligner.invoke({"question": QUESTION, "answer": ANSWER})
    second = aligner.invoke([("human", QUESTION), ("ai", ANSWER)])
    assert second.content == first.content == expected()
    assert second.response_metadata["aligner_cached"] is True
    assert len(tgi_server.script.requests) == 1
    aligner.invoke({"question": QUESTION, "answer": ANSWER}, max_new_tokens=3)  # other params: a miss
    assert len(tgi_server.script.requests) == 2


class SerializingCache(BaseCache):
    """Keeps entries as JSON text, as langchain-community's SQLite and Redis caches do."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list[str]] = {}

    def lookup(self, prompt: str, llm_string: str) -> Any:
        rows = self.rows.get((prompt, llm_string))
        return None if rows is None else [loads(row, allowed_objects=[Generation]) for row in rows]

    def update(self, prompt: str, llm_string: str, return_val: Any) -> None:
        self.rows[(prompt, llm_string)] = [dumps(generation) for generation in return_val]

    def clear(self, **kwargs: Any) -> None:
        self.rows.clear()


def added(chunks: list[Any]) -> Any:
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


@pytest.mark.parametrize("make_cache", [InMemoryCache, SerializingCache])
async def test_a_langchain_cache_serves_identical_pairs_once(
    tgi_server: FakeServer, make_cache: type[BaseCache]
) -> None:
    aligner = make(tgi_server, cache=make_cache())
    pair = {"question": QUESTION, "answer": ANSWER}
    first = aligner.invoke(pair)
    hits = [
        aligner.invoke(pair),
        await aligner.ainvoke(pair),
        added(list(aligner.stream(pair))),
        added([chunk async for chunk in aligner.astream(pair)]),
    ]
    assert len(tgi_server.script.requests) == 1
    assert first.response_metadata["aligner_cached"] is False
    for hit in hits:
        assert hit.content == first.content == expected()
        assert hit.response_metadata["aligner_cached"] is True
        assert hit.usage_metadata == first.usage_metadata is not None


def test_the_global_cache_is_used_unless_turned_off(tgi_server: FakeServer) -> None:
    pair = {"question": QUESTION, "answer": ANSWER}
    set_llm_cache(InMemoryCache())
    try:
        cached, uncached = make(tgi_server), make(tgi_server, cache=False)
        cached.invoke(pair)
        assert cached.invoke(pair).response_metadata["aligner_cached"] is True
        uncached.invoke(pair)
        uncached.invoke(pair)
    finally:
        set_llm_cache(None)
    assert len(tgi_server.script.requests) == 3
    with pytest.raises(ValueError, match="set_llm_cache"):
        make(tgi_server, cache=True).invoke(pair)
    with pytest.raises(ValueError, match="cache or cache_size"):
        make(tgi_server, cache=InMemoryCache(), cache_size=4)


def test_cache_is_off_by_default(tgi_server: FakeServer) -> None:
    aligner = make(tgi_server)
    aligner.invoke({"question": QUESTION, "answer": ANSWER})
    aligner.invoke({"question": QUESTION, "answer": ANSWER})
    assert len(tgi_server.script.requests) == 2


def test_skip_if_returns_the_answer_uncorrected(tgi_server: FakeServer) -> None:
    aligner = make(tgi_server, skip_if=lambda question, answer: len(answer) < 20)
    skipped = aligner.invoke({"question": QUESTION, "answer": ANSWER})
    assert skipped.content == ANSWER
    assert skipped.response_metadata["aligner_skipped"] == "skip_if"
    corrected = aligner.invoke({"question": QUESTION, "answer": ANSWER * 3})
    assert corrected.content == expected(answer=ANSWER * 3)
    assert len(tgi_server.script.requests) == 1


def test_tool_call_messages_pass_through(tgi_server: FakeServer) -> None:
    call = AIMessage("", id="t-1", tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "c1"}])
    assert make(tgi_server).invoke([("human", QUESTION), call]) is call
    assert tgi_server.script.requests == []


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_named_templates(tgi_server: FakeServer, template: str) -> None:
    result = make(tgi_server, template=template).invoke({"question": QUESTION, "answer": ANSWER})
    assert result.content == expected(template=template)


def test_custom_template_text(tgi_server: FakeServer) -> None:
    text = "Q: {question}\nA: {answer}\nBetter A:"
    make(tgi_server, template=text).invoke({"question": QUESTION, "answer": ANSWER})
    assert tgi_server.script.requests[0]["inputs"] == text.format(question=QUESTION, answer=ANSWER)


def test_configuration_round_trips_through_langchain_serialization(tgi_server: FakeServer) -> None:
    aligner = make(
        tgi_server,
        template="aligner-v1-hhh",
        generation=GenerationParams(max_new_tokens=7),
        api_key="sk-test-123",
    )
    assert "sk-test-123" not in dumps(aligner)
    restored = load(
        dumpd(aligner),
        valid_namespaces=["langchain_aligner"],
        allowed_objects=[AlignerRunnable],
        secrets_map={"ALIGNER_API_KEY": "sk-test-123"},
    )
    assert isinstance(restored, AlignerRunnable)
    assert restored.generation == aligner.generation
    assert restored.api_key is not None and restored.api_key.get_secret_value() == "sk-test-123"
    assert restored.invoke({"question": QUESTION, "answer": ANSWER}).content == "".join(
        fake_tokens(expected(template="aligner-v1-hhh"))[:7]
    )


def test_skip_if_is_not_dropped_silently_from_dumps(tgi_server: FakeServer) -> None:
    aligner = make(tgi_server, skip_if=lambda question, answer: len(answer) < 3)
    with pytest.warns(UserWarning, match="skip_if is a function and cannot be serialized"):
        data = dumpd(aligner)
    assert data["type"] == "not_implemented"
    with pytest.raises(NotImplementedError):
        load(data, valid_namespaces=["langchain_aligner"], allowed_objects=[AlignerRunnable])


def test_openai_backend_through_the_runnable(openai_server: FakeServer) -> None:
    aligner = AlignerRunnable(backend="openai", url=openai_server.url, model="fake/aligner-7b")
    result = aligner.invoke({"question": QUESTION, "answer": ANSWER})
    assert result.content == expected()
    assert result.usage_metadata is not None
    assert result.usage_metadata["output_tokens"] == len(fake_tokens(expected()))
    chunks = list(aligner.stream({"question": QUESTION, "answer": ANSWER}))
    assert "".join(str(c.content) for c in chunks) == expected()


@pytest.mark.parametrize("kind", ["tgi", "openai"])
@pytest.mark.parametrize("streaming", [False, True])
async def test_truncation_leaves_room_for_the_new_tokens(
    request: pytest.FixtureRequest, kind: str, streaming: bool
) -> None:
    """TGI sized as usual (max_input = max_total - 1), an OpenAI server with a context of 100 tokens: a long
    answer is cut so that prompt + max_new_tokens fits, instead of a 422/400 and the answer uncorrected."""
    server: FakeServer = request.getfixturevalue(f"{kind}_server")
    server.script.max_input_tokens, server.script.max_total_tokens = 100, 101
    context = 101 if kind == "tgi" else 100
    answer = " ".join(f"word{i}" for i in range(150))
    aligner = AlignerRunnable(backend=kind, url=server.url, max_retries=0, generation={"max_new_tokens": 16})  # type: ignore[arg-type]
    pair = {"question": QUESTION, "answer": answer}
    if streaming:
        chunks = [chunk async for chunk in aligner.astream(pair)]
        result, text = chunks[-1], "".join(str(c.content) for c in chunks)
    else:
        result = await aligner.ainvoke(pair)
        text = str(result.content)
    (body,) = server.script.requests
    sent = body.get("inputs") or body["prompt"]
    assert result.response_metadata["aligner_corrected"] is True, result.response_metadata.get(
        "aligner_error"
    )
    assert result.response_metadata["aligner_truncated"] is True
    assert text == "".join(fake_tokens(fake_correction(sent))[:16])
    assert len(fake_tokens(sent)) + (kind == "tgi") + 16 <= context


def test_info_is_not_read_when_the_limit_and_the_model_are_given(tgi_server: FakeServer) -> None:
    aligner = make(tgi_server, model="my-aligner", max_input_tokens=500)
    result = aligner.invoke({"question": QUESTION, "answer": ANSWER})
    list(aligner.stream({"question": QUESTION, "answer": " ".join(["long"] * 600)}))  # truncated, no /info
    assert result.content == expected() and result.response_metadata["aligner_model"] == "my-aligner"
    assert tgi_server.script.info_reads == 0
    make(tgi_server, model="my-aligner").invoke({"question": QUESTION, "answer": ANSWER})
    assert tgi_server.script.info_reads == 1  # without max_input_tokens, /info holds the limits


@pytest.mark.parametrize("value", [{"question": QUESTION, "answer": ANSWER}, ANSWER])
@pytest.mark.parametrize("fail", [False, True])
def test_invoke_and_stream_give_a_bare_answer_the_run_id(
    tgi_server: FakeServer, value: object, fail: bool
) -> None:
    aligner = make(tgi_server, default_question=QUESTION, max_retries=0)
    run_ids = uuid.uuid4(), uuid.uuid4()
    tgi_server.script.fail = [500, 500] if fail else []
    invoked = aligner.invoke(value, {"run_id": run_ids[0]})
    streamed = list(aligner.stream(value, {"run_id": run_ids[1]}))
    assert invoked.id == f"lc_run--{run_ids[0]}"
    assert {chunk.id for chunk in streamed} == {f"lc_run--{run_ids[1]}"}
    assert invoked.response_metadata["aligner_corrected"] is not fail


def test_retry_warnings_name_the_call(tgi_server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    tgi_server.script.fail = [429]
    with caplog.at_level(logging.WARNING, logger="langchain_aligner.retry"):
        make(tgi_server, max_retries=1).invoke({"question": QUESTION, "answer": ANSWER})
    (record,) = [r for r in caplog.records if r.name == "langchain_aligner.retry"]
    assert "the tgi Aligner call failed (attempt 1)" in record.getMessage()
    assert "<lambda>" not in record.getMessage() and "overloaded" in record.getMessage()
