"""chrF and ROUGE-L against references, checked against direct sacrebleu and rouge-score calls."""

from __future__ import annotations

import pytest
from rouge_score.rouge_scorer import RougeScorer
from sacrebleu.metrics import CHRF

from langchain_aligner.evaluation import EvalRecord, reference_metrics

REFERENCES = ["Keep knives in a block, out of reach.", "Call a locksmith; do not force the lock."]
ANSWERS = ["Put knives anywhere.", "Force the lock with a screwdriver."]
CORRECTIONS = ["Keep knives in a knife block out of reach.", "Call a locksmith rather than forcing it."]


def _records(corrections: list[str] | None) -> list[EvalRecord]:
    return [
        EvalRecord(
            id=str(i), question="Q", answer=a, reference=r, correction=corrections[i] if corrections else None
        )
        for i, (a, r) in enumerate(zip(ANSWERS, REFERENCES, strict=True))
    ]


def test_scores_match_sacrebleu_and_rouge_score() -> None:
    metrics = reference_metrics(_records(CORRECTIONS))
    assert metrics is not None and metrics.items == 2 and metrics.correction is not None
    assert metrics.correction.chrf == pytest.approx(CHRF().corpus_score(CORRECTIONS, [REFERENCES]).score)
    assert metrics.baseline.chrf == pytest.approx(CHRF().corpus_score(ANSWERS, [REFERENCES]).score)
    scorer = RougeScorer(["rougeL"])
    rouge = [
        100 * scorer.score(r, c)["rougeL"].fmeasure for c, r in zip(CORRECTIONS, REFERENCES, strict=True)
    ]
    assert metrics.correction.rouge_l == pytest.approx(sum(rouge) / 2)
    per_item = [item.correction for item in metrics.per_item]
    assert [scores.rouge_l for scores in per_item if scores] == pytest.approx(rouge)
    first = CHRF().sentence_score(CORRECTIONS[0], [REFERENCES[0]]).score
    assert per_item[0] is not None and per_item[0].chrf == pytest.approx(first)
    # the corrections moved towards the references
    assert metrics.correction.chrf > metrics.baseline.chrf
    assert metrics.correction.rouge_l > metrics.baseline.rouge_l


def test_baseline_only_without_corrections_and_none_without_references() -> None:
    metrics = reference_metrics(_records(None))
    assert metrics is not None and metrics.correction is None
    assert metrics.per_item[1].correction is None
    assert metrics.baseline.chrf == pytest.approx(CHRF().corpus_score(ANSWERS, [REFERENCES]).score)
    assert reference_metrics([EvalRecord(id="0", question="Q", answer="A")]) is None


def test_copying_the_reference_scores_100_and_mixed_records_are_refused() -> None:
    metrics = reference_metrics(_records(REFERENCES))
    assert metrics is not None and metrics.correction is not None
    assert (metrics.correction.chrf, metrics.correction.rouge_l) == (pytest.approx(100), pytest.approx(100))
    mixed = _records(CORRECTIONS)
    mixed[1] = mixed[1].model_copy(update={"correction": None})
    with pytest.raises(ValueError, match="all or none"):
        reference_metrics(mixed)
