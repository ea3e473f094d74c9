"""The Aligner paper's improvement metric per dimension, with a seeded bootstrap confidence interval.

improvement = (wins - losses) / (wins + losses + ties), in [-1, 1], counting only decided items (unparsed
verdicts and failed judge calls are reported beside it, not counted). The bootstrap resamples the decided
items with replacement; as each item is a win, a loss or a tie, a resample is a multinomial draw of the three
counts, so ``numpy`` draws all resamples at once without materialising them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from langchain_aligner.evaluation.judge import DIMENSIONS, Dimension, Judgement

__all__ = ["DimensionSummary", "bootstrap_ci", "improvement", "summarize"]


class DimensionSummary(BaseModel):
    """Counts, improvement and its confidence interval for one dimension.

    ``improvement``, ``ci_low`` and ``ci_high`` are ``None`` when no item was decided (all unparsed/failed).
    """

    dimension: Dimension
    wins: int
    ties: int
    losses: int
    unparsed: int = 0
    errors: int = 0
    improvement: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    level: float = 0.95

    @property
    def decided(self) -> int:
        """Items counted in the improvement: wins + ties + losses."""
        return self.wins + self.ties + self.losses


def _check_counts(wins: int, losses: int, ties: int) -> int:
    if min(wins, losses, ties) < 0:
        raise ValueError(f"counts must be non-negative, got wins={wins} losses={losses} ties={ties}")
    total = wins + losses + ties
    if total == 0:
        raise ValueError("no decided items (wins + losses + ties == 0): the improvement is undefined")
    return total


def improvement(wins: int, losses: int, ties: int) -> float:
    """(wins - losses) / (wins + losses + ties).

    Raises:
        ValueError: a count is negative, or all three are zero.
    """
    return (wins - losses) / _check_counts(wins, losses, ties)


def bootstrap_ci(
    wins: int, losses: int, ties: int, *, resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`improvement` at confidence ``level``.

    With only one kind of outcome (e.g. all wins) every resample is the same and the interval is a point.

    Raises:
        ValueError: bad counts (see :func:`improvement`), ``resamples < 1`` or ``level`` outside (0, 1).
    """
    total = _check_counts(wins, losses, ties)
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    draws = np.random.default_rng(seed).multinomial(total, np.array([wins, losses, ties]) / total, resamples)
    values = (draws[:, 0] - draws[:, 1]) / total
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def summarize(
    judgements: Sequence[Judgement], *, resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> list[DimensionSummary]:
    """One :class:`DimensionSummary` per dimension present in ``judgements``, in :data:`DIMENSIONS` order."""
    counts: dict[str, Counter[str]] = {}
    for judgement in judgements:
        counts.setdefault(judgement.dimension, Counter())[judgement.outcome] += 1
    summaries = []
    for dimension in (d for d in DIMENSIONS if d in counts):
        c = counts[dimension]
        wins, ties, losses = c["win"], c["tie"], c["loss"]
        summary = DimensionSummary(
            dimension=dimension,
            wins=wins,
            ties=ties,
            losses=losses,
            unparsed=c["unparsed"],
            errors=c["error"],
            level=level,
        )
        if summary.decided:
            summary.improvement = improvement(wins, losses, ties)
            summary.ci_low, summary.ci_high = bootstrap_ci(
                wins, losses, ties, resamples=resamples, level=level, seed=seed
            )
        summaries.append(summary)
    return summaries
