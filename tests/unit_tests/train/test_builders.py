"""Dataset builders: HH-RLHF, PKU-SafeRLHF, AlpacaEval, Q-A-C files to records; DataSource specs; the hub."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from langchain_aligner.records import QACRecord, RecordError
from langchain_aligner_train.builders import (
    DataSource,
    build_dataset,
    from_alpaca_eval,
    from_hh_rlhf,
    from_hub,
    from_json_records,
    from_pku_saferlhf,
)
from tests.helpers.paths import SHARED

DATA = SHARED / "data"


def _jsonl(path: Path, rows: list[Any]) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as stream:
        stream.writelines(json.dumps(row) + "\n" for row in rows)
    return path


def _hh(*turns: str) -> str:
    return "".join(f"\n\n{'Human' if i % 2 == 0 else 'Assistant'}: {t}" for i, t in enumerate(turns))


HH_ROWS = [
    {
        "chosen": _hh("How do I pick a lock?", "I can't help with that."),
        "rejected": _hh("How do I pick a lock?", "Use a pin."),
    },
    {
        "chosen": _hh("Hi", "Hello!", "Tell me a joke", "Why did the chicken cross the road?"),
        "rejected": _hh("Hi", "Hello!", "Tell me a joke", "No."),
    },
    {"chosen": _hh("Q", "same answer"), "rejected": _hh("Q", "same answer ")},
    {"chosen": _hh("Q1", "A"), "rejected": _hh("Q2", "B")},
    {"chosen": _hh("Q", ""), "rejected": _hh("Q", "B")},
    {"chosen": "no turns at all", "rejected": _hh("Q", "B")},
    {"chosen": _hh("Q")},
]


def test_hh_rlhf_pairs(tmp_path: Path) -> None:
    records = from_hh_rlhf(_jsonl(tmp_path / "hh.jsonl.gz", HH_ROWS))
    assert records == [
        QACRecord(
            question="How do I pick a lock?", answer="Use a pin.", correction="I can't help with that."
        ),
        QACRecord(
            question="Human: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke",
            answer="No.",
            correction="Why did the chicken cross the road?",
        ),
    ]
    assert [(e.line, e.reason) for e in records.skipped] == [
        (3, "chosen and rejected last turns are identical"),
        (4, "chosen and rejected dialogues differ before the last Assistant turn"),
        (5, "correction: must be a non-empty string"),
        (6, "the chosen dialogue has no Assistant turn"),
        (7, "missing field(s) ['rejected']"),
    ]
    with pytest.raises(RecordError, match=r"hh\.jsonl\.gz:3: chosen and rejected last turns are identical"):
        from_hh_rlhf(tmp_path / "hh.jsonl.gz", on_error="raise")
    assert from_hh_rlhf(HH_ROWS) == records  # rows given directly


PKU_ROWS = [
    {
        "prompt": "P1",
        "response_0": "bad",
        "response_1": "good",
        "better_response_id": 1,
        "safer_response_id": 1,
    },
    {
        "prompt": "P2",
        "response_0": "good",
        "response_1": "bad",
        "better_response_id": 0,
        "safer_response_id": 1,
    },
    {
        "prompt": "P3",
        "response_0": "same",
        "response_1": "same",
        "better_response_id": 0,
        "safer_response_id": 0,
    },
    {"prompt": "P4", "response_0": "x", "response_1": "y", "better_response_id": 2, "safer_response_id": 0},
]


def test_pku_saferlhf_preferences(tmp_path: Path) -> None:
    better = from_pku_saferlhf(PKU_ROWS)
    assert [(r.question, r.answer, r.correction) for r in better] == [
        ("P1", "bad", "good"),
        ("P2", "bad", "good"),
    ]
    assert [e.reason for e in better.skipped] == [
        "the two responses are identical",
        "better_response_id must be 0 or 1, got 2",
    ]
    safer = from_pku_saferlhf(PKU_ROWS, prefer="safer")
    assert [(r.question, r.correction) for r in safer] == [("P1", "good"), ("P2", "bad"), ("P4", "x")]
    both = from_pku_saferlhf(PKU_ROWS, prefer="both")
    assert [r.question for r in both] == ["P1"]
    assert "the better and the safer response differ" in [e.reason for e in both.skipped]
    path = tmp_path / "pku.parquet"
    pq.write_table(pa.Table.from_pylist(PKU_ROWS), path)
    assert from_pku_saferlhf(path) == better
    assert [e.location for e in from_pku_saferlhf(path).skipped] == [f"{path}[2]", f"{path}[3]"]


def test_alpaca_eval_and_json_records(tmp_path: Path) -> None:
    rows = [{"instruction": "Q", "original_output": "A", "output": "C", "generator": "g"}]
    path = tmp_path / "outputs.json.gz"
    with gzip.open(path, "wt") as stream:
        json.dump(rows, stream)
    expected = [QACRecord(question="Q", answer="A", correction="C")]
    assert from_alpaca_eval(path) == expected
    fields = {"question": "instruction", "answer": "original_output", "correction": "output"}
    assert from_json_records(path, fields=fields) == expected


def test_build_dataset_from_specs(tmp_path: Path) -> None:
    qac = _jsonl(
        tmp_path / "qac.jsonl", [{"question": f"q{i}", "answer": "a", "correction": "c"} for i in range(5)]
    )
    hh = _jsonl(tmp_path / "hh.jsonl", HH_ROWS)
    records = build_dataset(
        [
            {"kind": "jsonl", "path": str(qac), "limit": 3},
            DataSource(kind="hh_rlhf", path=str(hh)),
        ]
    )
    assert [r.question for r in records][:3] == ["q0", "q1", "q2"]
    assert len(records) == 5 and len(records.skipped) == 5
    assert build_dataset({"kind": "jsonl", "path": str(qac)}) == from_json_records(qac)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "jsonl"}, "needs a 'path'"),
        ({"kind": "hub", "path": "x.jsonl"}, "needs a dataset 'name'"),
        ({"kind": "hh_rlhf", "path": "x.jsonl", "fields": {"question": "q"}}, "'fields' does not apply"),
        ({"kind": "jsonl", "path": "x.jsonl", "builder": "hh_rlhf"}, "'builder' applies only"),
        (
            {"kind": "hub", "name": "a/b", "builder": "hh_rlhf", "fields": {"question": "q"}},
            "hh_rlhf builder",
        ),
        ({"kind": "csv", "path": "x.csv"}, "kind"),
        ({"kind": "jsonl", "path": "x.jsonl", "limit": 0}, "limit"),
        ({"kind": "jsonl", "path": "x.jsonl", "shuffle": True}, "shuffle"),
    ],
)
def test_bad_specs_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DataSource.model_validate(spec)


def test_spec_kind_must_match_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a parquet source needs a .parquet file"):
        build_dataset({"kind": "parquet", "path": str(tmp_path / "x.jsonl")})
    with pytest.raises(ValueError, match="no data sources"):
        build_dataset([])


def test_hub_unreachable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConnectionError, match="cannot load dataset 'Anthropic/hh-rlhf'.*local data source"):
        from_hub("Anthropic/hh-rlhf", "test", builder="hh_rlhf")
    with pytest.raises(ValueError, match="unknown builder"):
        from_hub("x/y", builder="csv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'fields' applies to the 'qac' builder only"):
        from_hub("x/y", builder="alpaca_eval", fields={"question": "prompt"})


def test_hub_builder_goes_through_load_dataset(tmp_path: Path) -> None:
    """``from_hub`` goes through ``datasets.load_dataset``: a local folder stands in for a hub name."""
    folder = tmp_path / "hh"
    folder.mkdir()
    _jsonl(folder / "test.jsonl", HH_ROWS)
    records = from_hub(
        str(folder), "test", builder="hh_rlhf", data_files={"test": str(folder / "test.jsonl")}
    )
    assert len(records) == 2 and len(records.skipped) == 5


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
def test_real_data_parses() -> None:
    """The shared HH-RLHF and AlpacaEval files parse in full (counts only; no dataset text here)."""
    hh = from_hh_rlhf(DATA / "hh_rlhf" / "harmless-base-test.jsonl.gz")
    assert (len(hh), len(hh.skipped)) == (2303, 9)  # 5 diverging dialogues, 4 empty chosen last turns
    for name in ("aligner-2b_gpt-4-turbo-2024-04-09.json.gz", "aligner-2b_qwen1.5-72b-chat.json.gz"):
        assert len(from_alpaca_eval(DATA / "alpaca_eval_aligner2b" / name)) == 805
