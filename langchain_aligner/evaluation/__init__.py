"""Evaluation of Aligner corrections: pairwise judging (3H), the paper's improvement, reference metrics.

The judge, the metric and the records need only the core dependencies; reference metrics, the runner and the
report need the ``eval`` extra (sacrebleu, rouge-score, matplotlib) and are imported when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from langchain_aligner.evaluation.judge import DIMENSIONS, Judgement, PairwiseJudge, parse_verdict
from langchain_aligner.evaluation.metrics import DimensionSummary, bootstrap_ci, improvement, summarize
from langchain_aligner.evaluation.records import EvalRecord, load_records, parse_field_map

if TYPE_CHECKING:
    from langchain_aligner.evaluation.reference import ReferenceMetrics, reference_metrics
    from langchain_aligner.evaluation.runner import EvalResult, Evaluation

__all__ = [
    "DIMENSIONS",
    "DimensionSummary",
    "EvalRecord",
    "EvalResult",
    "Evaluation",
    "Judgement",
    "PairwiseJudge",
    "ReferenceMetrics",
    "bootstrap_ci",
    "improvement",
    "load_records",
    "parse_field_map",
    "parse_verdict",
    "reference_metrics",
    "summarize",
]

_LAZY = {
    "ReferenceMetrics": "reference",
    "reference_metrics": "reference",
    "EvalResult": "runner",
    "Evaluation": "runner",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
