"""Preference and SFT data for the upstream model, built from its answers and an Aligner's corrections.

Weak-to-strong bootstrapping: the Aligner's correction of an upstream answer is a better answer, so
``(question, chosen=correction, rejected=answer)`` is a preference pair for TRL's ``DPOTrainer`` and
``(question, correction)`` a supervised example (TRL's ``SFTTrainer`` format). The usable triples are also
kept as Q-A-C records (``qac.jsonl``), which ``langchain-aligner train sft`` reads to train or distil an
Aligner.

* :func:`correct_answers` / :func:`acorrect_answers` run (question, answer) pairs through an
  :class:`~langchain_aligner.AlignerRunnable` and return :class:`Correction` triples.
* :func:`build_preference_data` turns triples (``Correction`` or any object with ``question``, ``answer`` and
  ``correction``, such as ``langchain_aligner.records.QACRecord``) into rows and counts what it dropped.
* :class:`PreferenceData` writes the rows as JSONL (atomically) and gives them as ``datasets.Dataset``.

Row formats are TRL's (see its "dataset formats" guide): ``conversational`` (default; the tokenizer's chat
template renders it) or ``standard`` (plain strings)::

    preference: {"prompt": [{"role": "user", "content": Q}],
                 "chosen": [{"role": "assistant", "content": C}],
                 "rejected": [{"role": "assistant", "content": A}]}
    sft:        {"prompt": [{"role": "user", "content": Q}],
                 "completion": [{"role": "assistant", "content": C}]}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig

from langchain_aligner.correction import CorrectionOutcome, pair_input
from langchain_aligner.records import (
    QACRecord,
    RecordError,
    read_objects,
    write_jsonl,
    write_records,
    write_text_atomic,
)

if TYPE_CHECKING:
    from datasets import Dataset

    from langchain_aligner import AlignerRunnable
    from langchain_aligner.runnable import AlignerRunnableInput

__all__ = [
    "Correction",
    "DropCounts",
    "PreferenceData",
    "QACLike",
    "RowFormat",
    "acorrect_answers",
    "build_preference_data",
    "correct_answers",
    "read_corrections",
]

RowFormat = Literal["conversational", "standard"]

PREFERENCE_FILE = "preference.jsonl"
SFT_FILE = "sft.jsonl"
QAC_FILE = "qac.jsonl"
COUNTS_FILE = "counts.json"


class QACLike(Protocol):
    """Anything with a question, the upstream answer and its correction (e.g.
    ``langchain_aligner.records.QACRecord``)."""

    @property
    def question(self) -> str: ...

    @property
    def answer(self) -> str: ...

    @property
    def correction(self) -> str: ...


@dataclass(frozen=True)
class Correction:
    """An upstream answer and what the Aligner made of it.

    ``corrected`` is False when the Aligner returned the answer as is (backend failure with
    ``on_error="return_original"``, ``skip_if``, or an exception); ``error`` then says why.
    ``finish_reason`` is the Aligner's (``"length"``: the correction was cut off by ``max_new_tokens``).
    """

    question: str
    answer: str
    correction: str
    corrected: bool = True
    finish_reason: str | None = None
    error: str | None = None

    @classmethod
    def from_message(cls, question: str, message: AIMessage) -> Correction:
        """Read an :class:`AlignerRunnable` output (see ``langchain_aligner.correction.CorrectionOutcome``).

        Raises:
            ValueError: ``message`` is not an Aligner's output.
        """
        outcome = CorrectionOutcome.of(message)
        return cls(
            question=question,
            answer=outcome.original,
            correction=message.text,
            corrected=outcome.corrected,
            finish_reason=message.response_metadata.get("finish_reason"),
            error=outcome.error or outcome.skipped,
        )


@dataclass
class DropCounts:
    """How many triples became preference pairs, and why the others were dropped."""

    kept: int = 0
    #: question, answer or correction empty (or only white space).
    empty: int = 0
    #: the Aligner failed or skipped the answer: the "correction" is the original.
    uncorrected: int = 0
    #: the correction hit ``max_new_tokens`` (finish reason ``"length"``): an unfinished answer.
    cut_off: int = 0
    #: the correction equals the answer after white-space normalisation: no preference to learn.
    unchanged: int = 0

    @property
    def total(self) -> int:
        """Triples seen."""
        return self.kept + self.empty + self.uncorrected + self.cut_off + self.unchanged


@dataclass
class PreferenceData:
    """Preference rows for ``DPOTrainer``, SFT rows for ``SFTTrainer``, Q-A-C records and the drop counts.

    The SFT rows and Q-A-C records hold every usable correction, unchanged ones included (the Aligner
    approved the answer); the preference rows only the changed ones.
    """

    preference: list[dict[str, Any]] = field(default_factory=list)
    sft: list[dict[str, Any]] = field(default_factory=list)
    records: list[QACRecord] = field(default_factory=list)
    counts: DropCounts = field(default_factory=DropCounts)

    def preference_dataset(self) -> Dataset:
        """The preference rows as a ``datasets.Dataset`` (columns ``prompt``, ``chosen``, ``rejected``)."""
        return _dataset(self.preference, "preference")

    def sft_dataset(self) -> Dataset:
        """The SFT rows as a ``datasets.Dataset`` (columns ``prompt``, ``completion``)."""
        return _dataset(self.sft, "SFT")

    def write(self, output_dir: str | Path) -> dict[str, Path]:
        """Write ``preference.jsonl``, ``sft.jsonl``, ``qac.jsonl`` and ``counts.json``; return the paths."""
        output_dir = Path(output_dir)
        write_records(self.records, output_dir / QAC_FILE)
        counts = {**asdict(self.counts), "total": self.counts.total, "sft": len(self.sft)}
        return {
            "preference": write_jsonl(self.preference, output_dir / PREFERENCE_FILE),
            "sft": write_jsonl(self.sft, output_dir / SFT_FILE),
            "qac": output_dir / QAC_FILE,
            "counts": write_text_atomic(output_dir / COUNTS_FILE, json.dumps(counts, indent=2) + "\n"),
        }


def build_preference_data(
    triples: Iterable[QACLike], *, row_format: RowFormat = "conversational", keep_cut_off: bool = False
) -> PreferenceData:
    """Turn (question, answer, correction) triples into preference and SFT rows.

    A triple is dropped, and counted in :class:`DropCounts`, when a text is empty, when it is a
    :class:`Correction` the Aligner did not make (``corrected=False``) or cut off
    (``finish_reason="length"``; kept with ``keep_cut_off=True``), or (preference rows only) when the
    correction equals the answer after white-space normalisation.
    """
    if row_format not in ("conversational", "standard"):
        raise ValueError(f"row_format must be 'conversational' or 'standard', not {row_format!r}")
    data = PreferenceData()
    for triple in triples:
        question, answer, correction = triple.question, triple.answer, triple.correction
        if not (question.strip() and answer.strip() and correction.strip()):
            data.counts.empty += 1
        elif not getattr(triple, "corrected", True):
            data.counts.uncorrected += 1
        elif not keep_cut_off and getattr(triple, "finish_reason", None) == "length":
            data.counts.cut_off += 1
        else:
            data.sft.append(_sft_row(question, correction, row_format))
            data.records.append(QACRecord(question=question, answer=answer, correction=correction))
            if _normalise(correction) == _normalise(answer):
                data.counts.unchanged += 1
            else:
                data.counts.kept += 1
                data.preference.append(_preference_row(question, correction, answer, row_format))
    return data


def correct_answers(
    pairs: Iterable[tuple[str, str] | Mapping[str, str]],
    aligner: AlignerRunnable,
    *,
    max_concurrency: int = 4,
) -> list[Correction]:
    """Correct each (question, answer) pair with ``aligner``, ``max_concurrency`` calls at a time.

    A pair is a ``(question, answer)`` tuple or a ``{"question", "answer"}`` mapping. A call that raises
    (``on_error="raise"``, bad input) gives an uncorrected :class:`Correction` with the error, so one bad
    pair never loses the others. The result is in input order.
    """
    items = _pairs(pairs)
    batch: list[AlignerRunnableInput] = [pair_input(aligner, *item) for item in items]
    outputs = aligner.batch(batch, _batch_config(max_concurrency), return_exceptions=True)
    return [_correction(item, output) for item, output in zip(items, outputs, strict=True)]


async def acorrect_answers(
    pairs: Iterable[tuple[str, str] | Mapping[str, str]],
    aligner: AlignerRunnable,
    *,
    max_concurrency: int = 4,
) -> list[Correction]:
    """Async :func:`correct_answers`."""
    items = _pairs(pairs)
    batch: list[AlignerRunnableInput] = [pair_input(aligner, *item) for item in items]
    outputs = await aligner.abatch(batch, _batch_config(max_concurrency), return_exceptions=True)
    return [_correction(item, output) for item, output in zip(items, outputs, strict=True)]


def read_corrections(path: str | Path) -> list[Correction]:
    """Read :class:`Correction` triples from a JSONL file (one object with its fields a line), as
    :func:`langchain_aligner.records.write_jsonl` writes them.

    Raises:
        RecordError: A line that is not a correction record (naming the file and line).
    """
    corrections = []
    for number, row in enumerate(read_objects(path), 1):
        try:
            corrections.append(Correction(**row))
        except TypeError as error:
            raise RecordError(path, number, f"not a correction record: {error}") from None
    return corrections


def _batch_config(max_concurrency: int) -> RunnableConfig:
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
    return {"max_concurrency": max_concurrency}


def _pairs(pairs: Iterable[tuple[str, str] | Mapping[str, str]]) -> list[tuple[str, str]]:
    """The (question, answer) tuples; the aligner's own input keys are applied by ``pair_input``."""
    items = []
    for pair in pairs:
        if isinstance(pair, Mapping):
            question, answer = pair["question"], pair["answer"]
        elif isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2:
            question, answer = pair
        else:
            raise TypeError(f"a pair is a (question, answer) tuple or a mapping with both keys, not {pair!r}")
        items.append((question, answer))
    return items


def _correction(item: tuple[str, str], output: AIMessage | Exception) -> Correction:
    question, answer = item
    if isinstance(output, Exception):
        error = f"{type(output).__name__}: {output}"
        return Correction(question, answer, answer, corrected=False, error=error)
    return Correction.from_message(question, output)


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _preference_row(question: str, chosen: str, rejected: str, row_format: RowFormat) -> dict[str, Any]:
    if row_format == "standard":
        return {"prompt": question, "chosen": chosen, "rejected": rejected}
    return {"prompt": _user(question), "chosen": _assistant(chosen), "rejected": _assistant(rejected)}


def _sft_row(question: str, correction: str, row_format: RowFormat) -> dict[str, Any]:
    if row_format == "standard":
        return {"prompt": question, "completion": correction}
    return {"prompt": _user(question), "completion": _assistant(correction)}


def _dataset(rows: list[dict[str, Any]], name: str) -> Dataset:
    from datasets import Dataset

    if not rows:
        raise ValueError(f"no {name} rows: every triple was dropped (see the drop counts)")
    return Dataset.from_list(rows)
