"""Q-A-C records: validation, JSON/JSONL/Parquet (gzip'd too), errors with file and line, warm-up."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from langchain_aligner.records import QACRecord, RecordError, read_records, write_records
from langchain_aligner_train.sft import identity_warmup

ROWS = [
    {"question": "How do I boil an egg?", "answer": "Just boil it.", "correction": "Boil it for 8 minutes."},
    {"question": "Is the sun a star?", "answer": "No.", "correction": "Yes, the Sun is a G-type star."},
    {"question": "Say hi", "answer": "hi", "correction": "Hello! How can I help?"},
]


def _records() -> list[QACRecord]:
    return [QACRecord(**row) for row in ROWS]


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")
    return path


def test_record_strips_and_rejects_empty_fields() -> None:
    record = QACRecord(question="  q ", answer="a\n", correction=" c")
    assert (record.question, record.answer, record.correction) == ("q", "a", "c")
    with pytest.raises(ValidationError, match="non-empty"):
        QACRecord(question="q", answer="   ", correction="c")
    with pytest.raises(ValidationError):
        QACRecord(question="q", answer=None, correction="c")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="frozen"):
        record.question = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name", ["data.jsonl", "data.jsonl.gz", "data.json", "data.json.gz", "data.parquet"])
def test_read_all_formats(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    elif ".jsonl" in name:
        _write_jsonl(path, [json.dumps(row) for row in ROWS])
    else:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "wt", encoding="utf-8") as stream:
            json.dump(ROWS, stream)
    records = read_records(path)
    assert records == _records()
    assert records.skipped == []


def test_field_map_and_extra_columns(tmp_path: Path) -> None:
    rows = [
        {"instruction": r["question"], "original_output": r["answer"], "output": r["correction"], "x": 1}
        for r in ROWS
    ]
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(rows))
    fields = {"question": "instruction", "answer": "original_output", "correction": "output"}
    assert read_records(path, fields=fields) == _records()
    with pytest.raises(ValueError, match="unknown field"):
        read_records(path, fields={"prompt": "instruction"})


def test_jsonl_error_names_file_and_line(tmp_path: Path) -> None:
    lines = [json.dumps(ROWS[0]), "", json.dumps({**ROWS[1], "answer": ""}), json.dumps(ROWS[2])]
    path = _write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(RecordError) as raised:
        read_records(path)
    assert raised.value.line == 3
    assert raised.value.path == str(path)
    assert str(raised.value).startswith(f"{path}:3: answer:")


def test_skip_keeps_every_good_record_and_logs_bad_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [
        json.dumps(ROWS[0]),
        "{not json",
        json.dumps({"question": "q", "answer": "a"}),
        json.dumps(["a", "list"]),
        json.dumps(ROWS[1]),
        json.dumps({**ROWS[2], "correction": 7}),
        json.dumps(ROWS[2]),
    ]
    path = _write_jsonl(tmp_path / "mixed.jsonl.gz", lines)
    with caplog.at_level(logging.WARNING, logger="langchain_aligner.records"):
        records = read_records(path, on_error="skip")
    assert records == _records()
    assert [(e.line, e.reason.split(":")[0]) for e in records.skipped] == [
        (2, "invalid JSON"),
        (3, "missing field(s) ['correction']"),
        (4, "expected an object, got list"),
        (6, "correction"),
    ]
    assert f"{path}:2: invalid JSON" in caplog.text
    assert "skipped 4 of 7 records" in caplog.text


def test_json_errors_use_the_index(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([ROWS[0], {**ROWS[1], "question": " "}]))
    with pytest.raises(RecordError, match=r"bad\.json\[1\]: question"):
        read_records(path)
    path.write_text(json.dumps({"question": "q"}))
    with pytest.raises(RecordError, match="expected a JSON list"):
        read_records(path)
    path.write_text("[{")
    with pytest.raises(RecordError, match="invalid JSON at line 1"):
        read_records(path)


def test_unsupported_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "none.jsonl")
    (tmp_path / "data.csv").write_text("question,answer,correction\n")
    with pytest.raises(ValueError, match="unsupported records file"):
        read_records(tmp_path / "data.csv")
    with pytest.raises(ValueError, match="on_error"):
        read_records(_write_jsonl(tmp_path / "ok.jsonl", [json.dumps(ROWS[0])]), on_error="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["out.jsonl", "sub/out.jsonl.gz"])
def test_write_round_trip_is_atomic(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_records(_records(), path)
    assert read_records(path) == _records()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind

    def failing():  # type: ignore[no-untyped-def]
        yield _records()[0]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_records(failing(), path)
    assert read_records(path) == _records()  # the old file is untouched
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    with pytest.raises(ValueError, match="JSONL"):
        write_records(_records(), tmp_path / "out.json")


def test_identity_warmup_split() -> None:
    records = [QACRecord(question=f"q{i}", answer=f"a{i}", correction=f"c{i}") for i in range(10)]
    warmup, main = identity_warmup(records, 0.2, seed=1)
    assert len(warmup) == 2 and len(main) == 8
    assert all(r.correction == r.answer for r in warmup)
    assert {r.question for r in warmup}.isdisjoint(r.question for r in main)
    assert [r.question for r in main] == sorted((r.question for r in main), key=lambda q: int(q[1:]))
    assert identity_warmup(records, 0.2, seed=1) == (warmup, main)
    assert identity_warmup(records, 0.2, seed=2)[0] != warmup
    _, everything = identity_warmup(records, 0.2, seed=1, keep_all=True)
    assert everything == records
    assert identity_warmup(records, 0.0, seed=0) == ([], records)
    with pytest.raises(ValueError, match="share"):
        identity_warmup(records, 1.5, seed=0)
