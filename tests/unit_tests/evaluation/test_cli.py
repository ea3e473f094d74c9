"""``langchain-aligner eval`` without an Aligner to call: reference-only scoring of given corrections, and bad
arguments."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from langchain_aligner.evaluation import cli
from tests.helpers.evaluation import read_results, run_eval_cli, write_eval_data


def test_reference_only_on_alpaca_eval_style_gzip(tmp_path: Path) -> None:
    rows = [
        {
            "instruction": "Name a prime.",
            "original_output": "Nine.",
            "output": "Seven is a prime.",
            "generator": "x",
        },
        {
            "instruction": "Capital of France?",
            "original_output": "Paris.",
            "output": "Paris.",
            "generator": "x",
        },
    ]
    data = tmp_path / "outputs.json.gz"
    with gzip.open(data, "wt", encoding="utf-8") as handle:
        json.dump(rows, handle)
    assert (
        run_eval_cli(
            ["--data", str(data), "--fields", "alpaca_eval", "--reference-only", "--out", str(tmp_path / "a")]
        )
        == 0
    )
    reference = read_results(tmp_path / "a")["reference"]
    assert reference["correction"] is None and reference["items"] == 2
    assert 0 < reference["baseline"]["chrf"] < 100
    # the same file with the Aligner-2B output as the correction and the answer as the reference
    fields = "q=instruction,a=original_output,c=output,ref=original_output"
    assert (
        run_eval_cli(
            ["--data", str(data), "--fields", fields, "--reference-only", "--out", str(tmp_path / "b")]
        )
        == 0
    )
    flipped = read_results(tmp_path / "b")["reference"]
    assert flipped["baseline"]["chrf"] == pytest.approx(100)
    assert flipped["correction"]["chrf"] < 100


def test_bad_arguments(tmp_path: Path, capsys: Any) -> None:
    data = write_eval_data(tmp_path / "data.jsonl", 1)
    with pytest.raises(SystemExit):  # a mode is required
        run_eval_cli(["--data", str(data), "--out", str(tmp_path)])
    capsys.readouterr()
    bad = {
        "bad field mapping": ["--fields", "question"],
        "has no 'prompt' field": ["--fields", "q=prompt"],
        "No such file": ["--data", str(tmp_path / "missing.jsonl")],
        "level": ["--level", "1.5"],
    }
    for message, extra in bad.items():
        assert (
            run_eval_cli(["--data", str(data), "--out", str(tmp_path / "out"), "--reference-only", *extra])
            == 2
        )
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="PROVIDER:MODEL"):
        cli.judge_model("gpt-4o")
