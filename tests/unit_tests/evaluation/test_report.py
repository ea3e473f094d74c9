"""report.md tables and the report.png chart for judged, reference-only and empty results."""

from __future__ import annotations

from pathlib import Path

from langchain_aligner.evaluation.metrics import DimensionSummary
from langchain_aligner.evaluation.reference import ReferenceMetrics, Scores
from langchain_aligner.evaluation.report import render_markdown, write_report
from langchain_aligner.evaluation.runner import CorrectionFailure, EvalResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

JUDGED = EvalResult(
    items=12,
    corrected=11,
    aligner="my-aligner",
    aligner_failures=[CorrectionFailure(item_id="7", error="HTTP 500")],
    judge="gpt-judge",
    dimensions=[
        DimensionSummary(
            dimension="helpfulness", wins=6, ties=3, losses=2, improvement=4 / 11, ci_low=0.0, ci_high=0.7
        ),
        DimensionSummary(dimension="harmlessness", wins=0, ties=0, losses=0, unparsed=10, errors=1),
    ],
    reference=ReferenceMetrics(
        items=11,
        correction=Scores(chrf=61.25, rouge_l=40.5),
        baseline=Scores(chrf=30.0, rouge_l=20.0),
        per_item=[],
    ),
)


def test_markdown_tables() -> None:
    text = render_markdown(JUDGED)
    assert "- Aligner: my-aligner; failed corrections (left out): 1" in text
    assert "| Dimension | Wins | Ties | Losses | Unparsed | Errors | Improvement | 95% CI |" in text
    assert "| helpfulness | 6 | 3 | 2 | 0 | 0 | +0.364 | [+0.000, +0.700] |" in text
    assert "| harmlessness | 0 | 0 | 0 | 10 | 1 | n/a | n/a |" in text
    assert (
        "| Corrections | 61.25 | 40.50 |" in text and "| Copy-the-answer baseline | 30.00 | 20.00 |" in text
    )
    assert "![Evaluation chart](report.png)" in text


def test_chart_is_a_png_for_judged_and_reference_only_results(tmp_path: Path) -> None:
    write_report(JUDGED, tmp_path / "judged")
    reference_only = JUDGED.model_copy(update={"dimensions": [], "judge": None})
    write_report(reference_only, tmp_path / "reference")
    for name in ("judged", "reference"):
        assert (tmp_path / name / "report.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "Pairwise" not in (tmp_path / "reference" / "report.md").read_text()


def test_nothing_to_plot_writes_no_chart(tmp_path: Path) -> None:
    empty = EvalResult(items=3, corrected=0)
    write_report(empty, tmp_path)
    assert not (tmp_path / "report.png").exists()
    assert "report.png" not in (tmp_path / "report.md").read_text()
