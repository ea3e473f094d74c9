"""One Q-A-C record I/O (langchain_aligner.records): training, evaluation and preference data read and write
through it, every write atomic, one AlpacaEval field map."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from langchain_aligner.evaluation.records import load_records, parse_field_map
from langchain_aligner.records import (
    ALPACA_EVAL_FIELDS,
    QACRecord,
    RecordError,
    RecordFileNotFound,
    read_objects,
    write_jsonl,
    write_text_atomic,
)
from langchain_aligner_train.builders import from_alpaca_eval
from langchain_aligner_train.preference import Correction, read_corrections

ALPACA_ROWS = [
    {
        "instruction": "Name a colour.",
        "original_output": "No.",
        "output": "Blue is a colour.",
        "generator": "x",
    },
    {"instruction": "Say hi.", "original_output": "Go away.", "output": "Hi there!", "generator": "x"},
]


def test_one_alpaca_eval_map_reads_the_same_file_for_training_and_evaluation(tmp_path: Path) -> None:
    path = tmp_path / "model_outputs.json"
    path.write_text(json.dumps(ALPACA_ROWS))
    trained = from_alpaca_eval(path)
    evaluated = load_records(path, parse_field_map("alpaca_eval"))
    assert [(r.question, r.answer, r.correction) for r in trained] == [
        (r.question, r.answer, r.reference) for r in evaluated
    ]
    assert trained[0] == QACRecord(question="Name a colour.", answer="No.", correction="Blue is a colour.")
    preset = parse_field_map("alpaca_eval")
    assert (preset["q"], preset["a"], preset["ref"]) == tuple(ALPACA_EVAL_FIELDS.values())


def test_evaluation_and_preference_files_name_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    good = json.dumps({"question": "q", "answer": "a", "correction": "c"})
    path.write_bytes(good.encode() + b"\n\n" + b'{"question": "caf\xe9", "answer": "a"}\n')
    with pytest.raises(RecordError, match=r"data\.jsonl:3: not UTF-8 text"):
        load_records(path)
    with pytest.raises(RecordError, match=r"data\.jsonl:3: not UTF-8 text"):
        read_corrections(path)
    path.write_text(good + "\n[1, 2]\n")
    with pytest.raises(RecordError, match=r"data\.jsonl:2: expected an object, got list"):
        load_records(path)
    with pytest.raises(RecordFileNotFound, match="No such file or directory"):
        read_objects(tmp_path / "absent.jsonl")


def test_rows_of_every_kind_round_trip_through_one_writer(tmp_path: Path) -> None:
    rows = [
        QACRecord(question="q", answer="a", correction="c"),  # a pydantic model
        Correction("q2", "a2", "c2"),  # a dataclass
        {"prompt": "p", "chosen": "é", "rejected": "r"},  # a mapping, non-ASCII kept as text
    ]
    for name in ("rows.jsonl", "rows.jsonl.gz"):
        written = write_jsonl(rows, tmp_path / name)
        assert read_objects(written) == [rows[0].model_dump(), vars(rows[1]), rows[2]]
    assert "é" in (tmp_path / "rows.jsonl").read_text(encoding="utf-8")


def test_a_write_that_fails_leaves_the_old_file_whole_and_no_temporary_file(tmp_path: Path) -> None:
    path = write_jsonl([{"n": 0}], tmp_path / "out.jsonl")

    def rows() -> Iterator[dict[str, int]]:
        yield {"n": 1}
        raise RuntimeError("the producer failed halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        write_jsonl(rows(), path)
    assert read_objects(path) == [{"n": 0}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    assert write_text_atomic(tmp_path / "counts.json", '{"kept": 1}\n').read_text() == '{"kept": 1}\n'
