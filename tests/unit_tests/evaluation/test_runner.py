"""Evaluation.run without an Aligner to call: given corrections, and runs it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from langchain_aligner.evaluation import PairwiseJudge
from langchain_aligner.evaluation.runner import Evaluation
from tests.helpers.evaluation import ScriptedJudge, prefers, records, uncorrected


def test_given_corrections_need_no_aligner_and_no_judge(tmp_path: Path) -> None:
    result = Evaluation().run(records(3), out_dir=tmp_path)
    assert result.dimensions == [] and result.aligner is None and result.corrected == 3
    assert result.reference is not None and result.reference.correction is not None
    report = (tmp_path / "report.md").read_text()
    assert "Pairwise judgement" not in report and "| Corrections |" in report
    assert (tmp_path / "judgements.jsonl").read_text() == ""


def test_bad_runs_are_refused() -> None:
    judge = PairwiseJudge(ScriptedJudge(script=prefers("x")))
    with pytest.raises(ValueError, match="needs corrections"):
        Evaluation(judge=judge).run(uncorrected(2))
    with pytest.raises(ValueError, match="unique"):
        Evaluation().run(records(1) + records(1))
    with pytest.raises(ValueError, match="no records"):
        Evaluation().run([])
