"""Preference and SFT data from corrections: drop rules and counts, TRL's formats, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage

from langchain_aligner import AlignerRunnable
from langchain_aligner.records import QACRecord, read_records, write_jsonl
from langchain_aligner_train.preference import (
    Correction,
    build_preference_data,
    correct_answers,
    read_corrections,
)

TRIPLES = [
    Correction("Is bleach safe to mix?", "Mix it with anything.", "Never mix bleach with ammonia."),
    Correction("Capital of France?", "Lyon.", "Paris."),
    Correction("Say hi.", "  Hello\nthere ", "Hello there"),  # unchanged after white-space normalisation
    Correction("Tell me a joke.", "No.", "No.", corrected=False, error="AlignerBackendError: 503"),
    Correction("Explain DNS.", "It maps names.", "DNS maps host names to", finish_reason="length"),
    Correction("Empty?", "Something.", "   "),
]


def test_drops_are_counted_by_kind_and_chosen_is_the_correction() -> None:
    data = build_preference_data(TRIPLES)

    counts = data.counts
    assert (counts.kept, counts.unchanged, counts.uncorrected, counts.cut_off, counts.empty) == (
        2,
        1,
        1,
        1,
        1,
    )
    assert counts.total == len(TRIPLES)
    assert data.preference[1] == {
        "prompt": [{"role": "user", "content": "Capital of France?"}],
        "chosen": [{"role": "assistant", "content": "Paris."}],
        "rejected": [{"role": "assistant", "content": "Lyon."}],
    }
    assert build_preference_data(TRIPLES, keep_cut_off=True).counts.kept == 3
    # SFT keeps the Aligner-approved unchanged answer too, not the failed, cut-off or empty ones.
    assert [row["completion"][0]["content"] for row in data.sft] == [
        "Never mix bleach with ammonia.",
        "Paris.",
        "Hello there",
    ]


def test_qac_records_and_the_standard_format() -> None:
    records = [
        QACRecord(question="Q1?", answer="bad", correction="good"),
        QACRecord(question="Q2?", answer="same", correction="same"),
    ]
    data = build_preference_data(records, row_format="standard")

    assert data.preference == [{"prompt": "Q1?", "chosen": "good", "rejected": "bad"}]
    assert data.sft == [{"prompt": "Q1?", "completion": "good"}, {"prompt": "Q2?", "completion": "same"}]
    assert data.counts.unchanged == 1
    with pytest.raises(ValueError, match="row_format"):
        build_preference_data(records, row_format="chatml")  # type: ignore[arg-type]


def test_trl_reads_the_rows(tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template, is_conversational

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    dataset = build_preference_data(TRIPLES).preference_dataset()

    assert dataset.column_names == ["prompt", "chosen", "rejected"]
    rendered = [apply_chat_template(row, tokenizer) for row in dataset]
    assert all(is_conversational(row) for row in dataset)
    assert rendered[1] == {
        "prompt": "<|user|>Capital of France?</s><|assistant|>",
        "chosen": "Paris.</s>",
        "rejected": "Lyon.</s>",
    }
    sft = build_preference_data(TRIPLES).sft_dataset()
    assert apply_chat_template(sft[1], tokenizer)["completion"] == "Paris.</s>"


def test_an_empty_dataset_is_refused() -> None:
    data = build_preference_data([TRIPLES[2]])
    with pytest.raises(ValueError, match="no preference rows"):
        data.preference_dataset()


def test_files_are_written_whole_and_read_back(tmp_path: Path) -> None:
    paths = build_preference_data(TRIPLES).write(tmp_path / "out")

    lines = paths["preference"].read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["chosen"][0]["content"] for line in lines] == [
        "Never mix bleach with ammonia.",
        "Paris.",
    ]
    assert len(paths["sft"].read_text(encoding="utf-8").splitlines()) == 3
    counts = json.loads(paths["counts"].read_text(encoding="utf-8"))
    assert counts == {
        "kept": 2,
        "empty": 1,
        "uncorrected": 1,
        "cut_off": 1,
        "unchanged": 1,
        "total": 6,
        "sft": 3,
    }
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "counts.json",
        "preference.jsonl",
        "qac.jsonl",
        "sft.jsonl",
    ]
    # The Q-A-C records are what `langchain-aligner train sft` reads (langchain_aligner.records).
    corrections = [r.correction for r in read_records(paths["qac"])]
    assert corrections == ["Never mix bleach with ammonia.", "Paris.", "Hello there"]

    write_jsonl(TRIPLES, tmp_path / "corrections.jsonl")
    assert read_corrections(tmp_path / "corrections.jsonl") == TRIPLES
    (tmp_path / "bad.jsonl").write_text('{"question": "q"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:1: not a correction record"):
        read_corrections(tmp_path / "bad.jsonl")


def test_from_message_needs_aligner_metadata() -> None:
    with pytest.raises(ValueError, match="aligner_original_answer"):
        Correction.from_message("Q?", AIMessage(content="plain chat answer"))
    with pytest.raises(TypeError, match="a pair is"):
        correct_answers(["just a string"], AlignerRunnable(backend="tgi", url="http://127.0.0.1:9"))  # type: ignore[list-item]
