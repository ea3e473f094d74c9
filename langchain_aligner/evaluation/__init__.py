"""Evaluation of Aligner corrections: pairwise judging (3H), the paper's improvement, reference metrics."""

from langchain_aligner.evaluation.judge import DIMENSIONS, Judgement, PairwiseJudge, parse_verdict
from langchain_aligner.evaluation.metrics import DimensionSummary, bootstrap_ci, improvement, summarize
from langchain_aligner.evaluation.records import EvalRecord, load_records, parse_field_map
from langchain_aligner.evaluation.reference import ReferenceMetrics, reference_metrics

__all__ = [
    "DIMENSIONS",
    "DimensionSummary",
    "EvalRecord",
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
