"""The evaluation report: ``report.md`` (tables) and ``report.png`` (bar charts, matplotlib's Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from langchain_aligner.records import write_text_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from langchain_aligner.evaluation.metrics import DimensionSummary
    from langchain_aligner.evaluation.reference import ReferenceMetrics
    from langchain_aligner.evaluation.runner import EvalResult

__all__ = ["render_markdown", "write_chart", "write_report"]

CHART_NAME = "report.png"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def _judge_table(summaries: list[DimensionSummary]) -> list[str]:
    level = round(100 * summaries[0].level)
    lines = [
        f"| Dimension | Wins | Ties | Losses | Unparsed | Errors | Improvement | {level}% CI |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in summaries:
        ci = "n/a" if s.ci_low is None else f"[{_signed(s.ci_low)}, {_signed(s.ci_high)}]"
        lines.append(
            f"| {s.dimension} | {s.wins} | {s.ties} | {s.losses} | {s.unparsed} | {s.errors} "
            f"| {_signed(s.improvement)} | {ci} |"
        )
    return lines


def _reference_table(reference: ReferenceMetrics) -> list[str]:
    lines = ["| Texts vs references | chrF | ROUGE-L |", "|---|---:|---:|"]
    if reference.correction is not None:
        lines.append(
            f"| Corrections | {reference.correction.chrf:.2f} | {reference.correction.rouge_l:.2f} |"
        )
    lines.append(
        f"| Copy-the-answer baseline | {reference.baseline.chrf:.2f} | {reference.baseline.rouge_l:.2f} |"
    )
    return lines


def render_markdown(result: EvalResult) -> str:
    """The report's Markdown: what was run, the judge table, the reference-metric table and the chart."""
    lines = [
        "# Aligner evaluation",
        "",
        f"- Items: {result.items}; with a correction: {result.corrected}",
        f"- Aligner: {result.aligner or 'none (corrections given)'}; failed corrections (left out): "
        f"{len(result.aligner_failures)}",
        f"- Judge: {result.judge or 'none'}",
        "",
    ]
    if result.dimensions:
        lines += [
            "## Pairwise judgement: correction vs original",
            "",
            *_judge_table(result.dimensions),
            "",
            "Improvement = (wins - losses) / (wins + ties + losses); a win means the judge preferred the "
            "correction (for harmlessness: judged the original the more harmful). Unparsed verdicts and "
            f"failed judge calls are not counted. Percentile bootstrap CI, {result.bootstrap_resamples} "
            f"resamples, seed {result.seed}.",
            "",
        ]
    if result.reference is not None:
        lines += [
            f"## Reference metrics ({result.reference.items} items)",
            "",
            *_reference_table(result.reference),
            "",
            "chrF: sacrebleu, corpus level. ROUGE-L: rouge-score F-measure x 100, mean over items.",
            "",
        ]
    if result.dimensions or result.reference is not None:
        lines += [f"![Evaluation chart]({CHART_NAME})", ""]
    return "\n".join(lines)


def write_chart(result: EvalResult, path: str | Path) -> Path | None:
    """Bar charts of the improvement per dimension (with CI) and of the reference metrics, if any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in ("judge", "reference") if (result.dimensions if p == "judge" else result.reference)]
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=True):
        if panel == "judge":
            _improvement_bars(axis, result.dimensions)
        else:
            assert result.reference is not None
            _reference_bars(axis, result.reference)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _improvement_bars(axis: Axes, summaries: list[DimensionSummary]) -> None:
    names = [s.dimension for s in summaries]
    values = [s.improvement or 0.0 for s in summaries]
    errors = [
        [v - (s.ci_low if s.ci_low is not None else v) for s, v in zip(summaries, values, strict=True)],
        [(s.ci_high if s.ci_high is not None else v) - v for s, v in zip(summaries, values, strict=True)],
    ]
    bars = axis.bar(names, values, yerr=errors, capsize=6, color="tab:blue")
    axis.bar_label(bars, labels=[_signed(s.improvement) for s in summaries], padding=3)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_ylim(-1.05, 1.05)
    axis.set_ylabel("improvement (wins - losses) / decided")
    axis.set_title("Correction vs original")


def _reference_bars(axis: Axes, reference: ReferenceMetrics) -> None:
    rows = [("baseline (answer)", reference.baseline)]
    if reference.correction is not None:
        rows.append(("corrections", reference.correction))
    width = 0.8 / len(rows)
    for i, (label, scores) in enumerate(rows):
        positions = [x + (i - (len(rows) - 1) / 2) * width for x in range(2)]
        axis.bar(positions, [scores.chrf, scores.rouge_l], width, label=label)
    axis.set_xticks(range(2), ["chrF", "ROUGE-L"])
    axis.set_ylim(0, 100)
    axis.set_title(f"Against references ({reference.items} items)")
    axis.legend()


def write_report(result: EvalResult, out_dir: str | Path) -> Path:
    """Write ``report.md`` and, when there is something to plot, ``report.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_chart(result, out / CHART_NAME)
    return write_text_atomic(out / "report.md", render_markdown(result))
