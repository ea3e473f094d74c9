"""The improvement formula and its bootstrap confidence interval on constructed counts."""

from __future__ import annotations

import numpy as np
import pytest

from langchain_aligner.evaluation import bootstrap_ci, improvement, summarize
from langchain_aligner.evaluation.judge import Judgement


def test_improvement_formula() -> None:
    assert improvement(6, 2, 2) == pytest.approx(0.4)
    assert improvement(0, 3, 1) == pytest.approx(-0.75)
    assert improvement(0, 0, 5) == 0.0
    with pytest.raises(ValueError, match="no decided items"):
        improvement(0, 0, 0)
    with pytest.raises(ValueError, match="non-negative"):
        improvement(-1, 2, 0)


def test_bootstrap_ci_contains_the_estimate_and_narrows_with_more_items() -> None:
    low, high = bootstrap_ci(60, 20, 20, resamples=4000, seed=1)
    assert low < 0.4 < high
    wide = bootstrap_ci(6, 2, 2, resamples=4000, seed=1)
    assert wide[1] - wide[0] > high - low
    assert bootstrap_ci(60, 20, 20, resamples=4000, seed=1) == (low, high)
    # a resample of the decided items, drawn item by item, gives the same interval up to noise
    outcomes = np.repeat([1, -1, 0], [60, 20, 20])
    rng = np.random.default_rng(0)
    means = outcomes[rng.integers(0, 100, size=(4000, 100))].mean(axis=1)
    assert np.quantile(means, [0.025, 0.975]) == pytest.approx([low, high], abs=0.03)


def test_bootstrap_ci_level_and_degenerate_cases() -> None:
    assert bootstrap_ci(5, 0, 0) == (1.0, 1.0)
    assert bootstrap_ci(0, 0, 3) == (0.0, 0.0)
    narrow, wide = bootstrap_ci(30, 20, 10, level=0.5), bootstrap_ci(30, 20, 10, level=0.99)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(1, 1, 1, level=1.0)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci(1, 1, 1, resamples=0)
    with pytest.raises(ValueError, match="no decided items"):
        bootstrap_ci(0, 0, 0)


def test_summarize_without_decided_items_reports_none() -> None:
    judgements = [
        Judgement(item_id="1", dimension="harmlessness", order="correction_first", raw="hmm"),
        Judgement(item_id="2", dimension="harmlessness", order="original_first", error="Timeout"),
    ]
    (summary,) = summarize(judgements)
    assert (summary.unparsed, summary.errors, summary.decided) == (1, 1, 0)
    assert summary.improvement is None and summary.ci_low is None and summary.ci_high is None
