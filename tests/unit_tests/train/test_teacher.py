"""Teacher corrections: concurrent calls to a LangChain chat model, appended as they finish, resumed after
failures and interruptions without duplicates or losses."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.prompts import ChatPromptTemplate

from langchain_aligner.records import QACRecord, read_records
from langchain_aligner_train.teacher import agenerate_corrections, generate_corrections, pair_key
from tests.helpers.paths import REPOSITORY
from tests.helpers.teacher import PAIRS, EditorModel


def _lines(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


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
    assert len(_lines(output)) == len(first)

    retry_model = EditorModel()
    second = await agenerate_corrections(PAIRS, retry_model, output, progress=False)
    assert sorted(retry_model.calls) == sorted(PAIRS[i][1] for i in failing)
    assert len(second) == len(PAIRS) and not second.skipped
    assert sorted(pair_key(line["question"], line["answer"]) for line in _lines(output)) == sorted(
        pair_key(*pair) for pair in PAIRS
    )


async def test_interrupted_run_resumes_without_duplicates_or_losses(tmp_path: Path) -> None:
    output = tmp_path / "teacher.jsonl"
    model = EditorModel(block_after=5)
    task = asyncio.create_task(agenerate_corrections(PAIRS, model, output, concurrency=4, progress=False))
    while not output.exists() or len(_lines(output)) < 5:
        await asyncio.sleep(0.01)
    while model.in_flight < 4:  # the next four calls are in flight when the run is interrupted
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(_lines(output)) == 5  # every finished record is on disk

    resumed = EditorModel()
    records = await agenerate_corrections(PAIRS, resumed, output, concurrency=4, progress=False)
    assert len(resumed.calls) == len(PAIRS) - 5
    assert [(r.question, r.answer) for r in records] == PAIRS
    questions = [line["question"] for line in _lines(output)]
    assert len(questions) == len(set(questions)) == len(PAIRS)


CTRL_C_SCRIPT = """
import sys
from tests.helpers.teacher import PAIRS, EditorModel
from langchain_aligner_train.teacher import generate_corrections
generate_corrections(PAIRS, EditorModel(block_after=5), sys.argv[1], concurrency=4, progress=False)
"""


def _interruptible() -> None:
    """In the child: SIGINT as a shell gives it (handled, unblocked), whatever the test process inherited or
    set up, so that Python turns it into KeyboardInterrupt."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_every_finished_record(tmp_path: Path) -> None:
    output = tmp_path / "teacher.jsonl"
    run = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, str(output)],
        cwd=REPOSITORY,
        stderr=subprocess.PIPE,
        preexec_fn=_interruptible,
    )
    try:
        while not output.exists() or len(_lines(output)) < 5:
            assert run.poll() is None, run.stderr.read().decode() if run.stderr else ""
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode != 0 and b"KeyboardInterrupt" in stderr
    assert len(_lines(output)) == 5
    resumed = EditorModel()
    records = generate_corrections(PAIRS, resumed, output, progress=False)
    assert len(resumed.calls) == len(PAIRS) - 5 and len(records) == len(PAIRS)
    assert len({line["question"] for line in _lines(output)}) == len(_lines(output)) == len(PAIRS)


async def test_a_line_cut_short_is_repaired_and_asked_again(tmp_path: Path) -> None:
    output = tmp_path / "teacher.jsonl"
    done = QACRecord(question=PAIRS[0][0], answer=PAIRS[0][1], correction="Done.")
    output.write_text(done.model_dump_json() + "\n" + '{"question": "Question 1?", "answer": "Ans')
    model = EditorModel()
    records = await agenerate_corrections(PAIRS[:3], model, output, progress=False)
    assert records[0] == done
    assert sorted(model.calls) == [PAIRS[1][1], PAIRS[2][1]]
    assert read_records(output, on_error="raise")[0] == done
    assert len(_lines(output)) == 3


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
