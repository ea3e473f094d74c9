"""The evaluation run: correct the answers with an Aligner, judge them, score them against references, write.

Steps (each optional): records without a ``correction`` go through an :class:`AlignerRunnable` (batched, at
most ``max_concurrency`` at once); a failed correction (the Aligner's ``aligner_error``, or an exception) is
counted and its record left out of judging and of the reference metrics, so that a failure is not scored as
an unchanged answer. A :class:`PairwiseJudge` judges the rest; :func:`reference_metrics` scores them where
they have references. With an output directory, :func:`write_outputs` writes every correction, judgement and
the results, and the Markdown report with its chart.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, ConfigDict, Field

from langchain_aligner.correction import CorrectionOutcome, pair_input
from langchain_aligner.evaluation.judge import Judgement, PairwiseJudge
from langchain_aligner.evaluation.metrics import DimensionSummary, summarize
from langchain_aligner.evaluation.records import EvalRecord
from langchain_aligner.evaluation.reference import ReferenceMetrics, reference_metrics
from langchain_aligner.evaluation.report import write_report
from langchain_aligner.records import write_jsonl, write_text_atomic
from langchain_aligner.runnable import AlignerRunnable, AlignerRunnableInput

__all__ = [
    "CorrectionFailure",
    "EvalResult",
    "Evaluation",
    "acorrect",
    "correct",
    "write_outputs",
]


class CorrectionFailure(BaseModel):
    """An answer the Aligner did not correct, and why."""

    item_id: str
    error: str


class EvalResult(BaseModel):
    """What an evaluation run found; ``judgements`` and per-item scores are in the output files."""

    items: int
    corrected: int
    aligner: str | None = None
    aligner_failures: list[CorrectionFailure] = []
    judge: str | None = None
    dimensions: list[DimensionSummary] = []
    reference: ReferenceMetrics | None = None
    bootstrap_resamples: int = 10_000
    seed: int = 0


def _inputs(aligner: AlignerRunnable, records: Sequence[EvalRecord]) -> list[AlignerRunnableInput]:
    return [pair_input(aligner, r.question, r.answer) for r in records]


def _merge(
    records: Sequence[EvalRecord], todo: Sequence[EvalRecord], outputs: Iterable[Any]
) -> tuple[list[EvalRecord], list[CorrectionFailure]]:
    """Records with their corrections; failed ones keep ``correction=None``."""
    corrected: dict[str, EvalRecord] = {}
    failures = []
    for record, output in zip(todo, outputs, strict=True):
        if isinstance(output, BaseException):
            failures.append(CorrectionFailure(item_id=record.id, error=f"{type(output).__name__}: {output}"))
        elif (error := CorrectionOutcome.of(output).error) is not None:
            failures.append(CorrectionFailure(item_id=record.id, error=error))
        else:
            corrected[record.id] = record.model_copy(update={"correction": output.text})
    return [corrected.get(r.id, r) for r in records], failures


def correct(
    records: Sequence[EvalRecord], aligner: AlignerRunnable, *, max_concurrency: int = 8
) -> tuple[list[EvalRecord], list[CorrectionFailure]]:
    """Correct the records that have no ``correction`` yet; returns all records and the failures."""
    todo = [r for r in records if r.correction is None]
    config: RunnableConfig = {"max_concurrency": max_concurrency}
    outputs = aligner.batch(_inputs(aligner, todo), config, return_exceptions=True) if todo else []
    return _merge(records, todo, outputs)


async def acorrect(
    records: Sequence[EvalRecord], aligner: AlignerRunnable, *, max_concurrency: int = 8
) -> tuple[list[EvalRecord], list[CorrectionFailure]]:
    """Async :func:`correct`."""
    todo = [r for r in records if r.correction is None]
    config: RunnableConfig = {"max_concurrency": max_concurrency}
    outputs = await aligner.abatch(_inputs(aligner, todo), config, return_exceptions=True) if todo else []
    return _merge(records, todo, outputs)


def _model_name(model: Any) -> str:
    for attribute in ("model_name", "model"):
        if isinstance(value := getattr(model, attribute, None), str):
            return value
    return type(model).__name__


class Evaluation(BaseModel):
    """Corrects (with ``aligner``), judges (with ``judge``) and scores records; optionally writes the outputs.

    Example:
        .. code-block:: python

            evaluation = Evaluation(aligner=AlignerRunnable(url=...), judge=PairwiseJudge(chat_model))
            result = evaluation.run(load_records("data.jsonl"), out_dir="eval-out")
            result = await evaluation.arun(records)

    Records that already have a ``correction`` are not sent to the Aligner; without a judge only reference
    metrics are computed; without an aligner, judging needs records with corrections.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    aligner: AlignerRunnable | None = None
    judge: PairwiseJudge | None = None
    max_concurrency: int = Field(default=8, ge=1, description="Aligner calls in flight at once.")
    resamples: int = Field(default=10_000, ge=1, description="Bootstrap resamples of the improvement's CI.")
    level: float = Field(default=0.95, gt=0, lt=1, description="Confidence level of the CI.")
    seed: int = Field(default=0, description="Bootstrap seed.")

    def run(self, records: Sequence[EvalRecord], out_dir: str | Path | None = None) -> EvalResult:
        """Evaluate ``records``; write the outputs to ``out_dir`` (see :func:`write_outputs`) if given.

        Raises:
            ValueError: no records, duplicate ids, or a judge but neither an aligner nor corrections.
        """
        self._check(records)
        failures: list[CorrectionFailure] = []
        if self.aligner is not None:
            records, failures = correct(records, self.aligner, max_concurrency=self.max_concurrency)
        judgements = self.judge.judge(_with_correction(records)) if self.judge is not None else []
        return self._finish(records, failures, judgements, out_dir)

    async def arun(self, records: Sequence[EvalRecord], out_dir: str | Path | None = None) -> EvalResult:
        """Async :meth:`run`: Aligner and judge calls are awaited; scoring and writing run in a thread."""
        self._check(records)
        failures: list[CorrectionFailure] = []
        if self.aligner is not None:
            records, failures = await acorrect(records, self.aligner, max_concurrency=self.max_concurrency)
        judgements = await self.judge.ajudge(_with_correction(records)) if self.judge is not None else []
        return await asyncio.to_thread(self._finish, records, failures, judgements, out_dir)

    def _check(self, records: Sequence[EvalRecord]) -> None:
        if not records:
            raise ValueError("no records to evaluate")
        if len({r.id for r in records}) != len(records):
            raise ValueError("record ids must be unique")
        if self.judge is not None and self.aligner is None and any(r.correction is None for r in records):
            raise ValueError("judging needs corrections: pass an aligner or records with a correction")

    def _finish(
        self,
        records: Sequence[EvalRecord],
        failures: list[CorrectionFailure],
        judgements: Sequence[Judgement],
        out_dir: str | Path | None,
    ) -> EvalResult:
        failed = {f.item_id for f in failures}
        result = EvalResult(
            items=len(records),
            corrected=len(_with_correction(records)),
            aligner=self.aligner.aligner_backend.model_name if self.aligner is not None else None,
            aligner_failures=failures,
            judge=_model_name(self.judge.model) if self.judge is not None else None,
            dimensions=summarize(judgements, resamples=self.resamples, level=self.level, seed=self.seed),
            reference=reference_metrics([r for r in records if r.id not in failed]),
            bootstrap_resamples=self.resamples,
            seed=self.seed,
        )
        if out_dir is not None:
            write_outputs(out_dir, records, judgements, result)
        return result


def _with_correction(records: Sequence[EvalRecord]) -> list[EvalRecord]:
    return [r for r in records if r.correction is not None]


def write_outputs(
    out_dir: str | Path, records: Sequence[EvalRecord], judgements: Sequence[Judgement], result: EvalResult
) -> Path:
    """Write ``corrections.jsonl`` (the records, readable again as input), ``judgements.jsonl``,
    ``reference_scores.jsonl`` (per item), ``results.json``, ``report.md`` and ``report.png``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(records, out / "corrections.jsonl")
    write_jsonl(judgements, out / "judgements.jsonl")
    write_jsonl(result.reference.per_item if result.reference else [], out / "reference_scores.jsonl")
    summary = result.model_dump(mode="json", exclude={"reference": {"per_item"}})
    write_text_atomic(out / "results.json", json.dumps(summary, indent=2) + "\n")
    write_report(result, out)
    return out
