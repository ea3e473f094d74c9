"""Teacher corrections: concurrent calls to a LangChain chat model, appended as they finish, resumed after
failures and interruptions without duplicates or losses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.prompts import ChatPromptTemplate

from langchain_aligner.records import QACRecord, read_records
from langchain_aligner_train.teacher import agenerate_corrections, generate_corrections, pair_key
from tests.helpers.teacher import PAIRS, EditorModel, written_lines


async def test_concurrent_corrections_in_a_plain_qac_file(tmp_path: Path) -> None:
    model = EditorModel()
    output = tmp_path / "teacher.jsonl"
    records = await agenerate_corrections(PAIRS + PAIRS[:2], model, output, concurrency=3, progress=False)
    assert [(r.question, r.answer) for r in records] == PAIRS  # input order, repeated pairs asked once
    assert all(r.correction == r.answer.upper() for r in records)
    assert len(model.calls) == len(PAIRS)
    assert model.most_in_flight == 3
    assert sorted(read_records(output), key=lambda r: int(r.question.split()[1][:-1])) == records


async def test_failures_are_logged_and_retried_on_the_next_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = tmp_path / "teacher.jsonl"
    first = await agenerate_corrections(PAIRS, EditorModel(fail_on="1"), output, progress=False)
    failing = [i for i, (_, answer) in enumerate(PAIRS) if "1" in answer]  # Answer 1, 10, 11
    assert len(first) == len(PAIRS) - len(failing)
    assert [(e.line, e.reason) for e in first.skipped] == [
        (i, f"RuntimeError: refused {PAIRS[i][1]}") for i in failing
    ]
    assert pair_key(*PAIRS[1]) in caplog.text
    assert len(written_lines(output)) == len(first)

    retry_model = EditorModel()
    second = await agenerate_corrections(PAIRS, retry_model, output, progress=False)
    assert sorted(retry_model.calls) == sorted(PAIRS[i][1] for i in failing)
    assert len(second) == len(PAIRS) and not second.skipped
    assert sorted(pair_key(line["question"], line["answer"]) for line in written_lines(output)) == sorted(
        pair_key(*pair) for pair in PAIRS
    )


async def test_interrupted_run_resumes_without_duplicates_or_losses(tmp_path: Path) -> None:
    output = tmp_path / "teacher.jsonl"
    model = EditorModel(block_after=5)
    task = asyncio.create_task(agenerate_corrections(PAIRS, model, output, concurrency=4, progress=False))
    while not output.exists() or len(written_lines(output)) < 5:
        await asyncio.sleep(0.01)
    while model.in_flight < 4:  # the next four calls are in flight when the run is interrupted
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(written_lines(output)) == 5  # every finished record is on disk

    resumed = EditorModel()
    records = await agenerate_corrections(PAIRS, resumed, output, concurrency=4, progress=False)
    assert len(resumed.calls) == len(PAIRS) - 5
    assert [(r.question, r.answer) for r in records] == PAIRS
    questions = [line["question"] for line in written_lines(output)]
    assert len(questions) == len(set(questions)) == len(PAIRS)


async def test_a_line_cut_short_is_repaired_and_asked_again(tmp_path: Path) -> None:
    output = tmp_path / "teacher.jsonl"
    done = QACRecord(question=PAIRS[0][0], answer=PAIRS[0][1], correction="Done.")
    output.write_text(done.model_dump_json() + "\n" + '{"question": "Question 1?", "answer": "Ans')
    model = EditorModel()
    records = await agenerate_corrections(PAIRS[:3], model, output, progress=False)
    assert records[0] == done
    assert sorted(model.calls) == [PAIRS[1][1], PAIRS[2][1]]
    assert read_records(output, on_error="raise")[0] == done
    assert len(written_lines(output)) == 3


def test_sync_with_any_chat_model_and_a_custom_prompt(tmp_path: Path) -> None:
    prompt = ChatPromptTemplate.from_messages([("human", "Fix this answer to {question}: {answer}")])
    model = FakeListChatModel(responses=["first fix", "second fix"])
    pairs = [{"question": q, "answer": a} for q, a in PAIRS[:2]]
    records = generate_corrections(pairs, model, tmp_path / "out.jsonl", prompt=prompt, concurrency=1)
    assert [r.correction for r in records] == ["first fix", "second fix"]
    assert read_records(tmp_path / "out.jsonl") == records


async def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    with pytest.raises(ValueError, match="concurrency"):
        await agenerate_corrections(PAIRS, EditorModel(), output, concurrency=0)
    with pytest.raises(ValueError, match=r"input variable\(s\) \['answer'\]"):
        await agenerate_corrections(
            PAIRS, EditorModel(), output, prompt=ChatPromptTemplate.from_template("{question}")
        )
    with pytest.raises(ValueError, match=".jsonl"):
        await agenerate_corrections(PAIRS, EditorModel(), tmp_path / "out.json")
    with pytest.raises(ValueError, match="pair 1: question and answer must be non-empty"):
        await agenerate_corrections([("q", "a"), ("q", " ")], EditorModel(), output)
    with pytest.raises(ValueError, match="pair 0 needs 'question' and 'answer'"):
        await agenerate_corrections([{"prompt": "q"}], EditorModel(), output)
    with pytest.raises(RuntimeError, match="await agenerate_corrections"):
        generate_corrections(PAIRS, EditorModel(), output)
    assert not output.exists()
