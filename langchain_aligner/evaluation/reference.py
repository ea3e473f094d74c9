"""Reference metrics that need no judge: chrF (sacrebleu) and ROUGE-L (rouge-score) against references.

The corrections are scored against the reference corrections, next to the copy-the-answer baseline (the
upstream answer scored against the same references): a correction that beats the baseline moved towards the
reference. chrF is sacrebleu's corpus-level chrF (and its sentence-level score per item); ROUGE-L is
rouge-score's ``rougeL`` F-measure (default tokenizer: lower-cased ASCII letters and digits, no stemming),
averaged over items. Both are on a 0-100 scale.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel
from rouge_score.rouge_scorer import RougeScorer
from sacrebleu.metrics import CHRF

from langchain_aligner.evaluation.records import EvalRecord

__all__ = [
    "ItemReferenceScores",
    "ReferenceMetrics",
    "Scores",
    "chrf_scores",
    "reference_metrics",
    "rouge_l_scores",
]


class Scores(BaseModel):
    """chrF and ROUGE-L of some texts against their references, 0-100."""

    chrf: float
    rouge_l: float


class ItemReferenceScores(BaseModel):
    """One item's sentence-level scores; ``correction`` is ``None`` when the records carry no corrections."""

    item_id: str
    correction: Scores | None = None
    baseline: Scores


class ReferenceMetrics(BaseModel):
    """Corpus-level scores of the corrections and of the copy-the-answer baseline (the answers)."""

    items: int
    correction: Scores | None = None
    baseline: Scores
    per_item: list[ItemReferenceScores]


def chrf_scores(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, list[float]]:
    """sacrebleu chrF: the corpus score and one sentence score per hypothesis."""
    chrf = CHRF()
    corpus = chrf.corpus_score(list(hypotheses), [list(references)]).score
    return corpus, [chrf.sentence_score(h, [r]).score for h, r in zip(hypotheses, references, strict=True)]


def rouge_l_scores(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, list[float]]:
    """rouge-score ROUGE-L F-measure x 100: the mean and one score per hypothesis."""
    scorer = RougeScorer(["rougeL"])
    scores = [
        100 * scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references, strict=True)
    ]
    return sum(scores) / len(scores), scores


def reference_metrics(records: Sequence[EvalRecord]) -> ReferenceMetrics | None:
    """Score the records that have a reference; ``None`` when none has one.

    Raises:
        ValueError: some referenced records have a correction and others do not.
    """
    scored = [r for r in records if r.reference is not None]
    if not scored:
        return None
    references = [r.reference or "" for r in scored]
    with_correction = sum(r.correction is not None for r in scored)
    if with_correction not in (0, len(scored)):
        raise ValueError(
            f"{with_correction} of {len(scored)} referenced records have a correction: all or none"
        )
    baseline, baseline_items = _scores([r.answer for r in scored], references)
    metrics = ReferenceMetrics(
        items=len(scored),
        baseline=baseline,
        per_item=[
            ItemReferenceScores(item_id=r.id, baseline=scores)
            for r, scores in zip(scored, baseline_items, strict=True)
        ],
    )
    if with_correction:
        metrics.correction, correction_items = _scores([r.correction or "" for r in scored], references)
        for item, scores in zip(metrics.per_item, correction_items, strict=True):
            item.correction = scores
    return metrics


def _scores(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[Scores, list[Scores]]:
    chrf, chrf_items = chrf_scores(hypotheses, references)
    rouge_l, rouge_items = rouge_l_scores(hypotheses, references)
    items = [Scores(chrf=c, rouge_l=g) for c, g in zip(chrf_items, rouge_items, strict=True)]
    return Scores(chrf=chrf, rouge_l=rouge_l), items
