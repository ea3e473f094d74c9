"""Evaluation records and how they are read, with a field map, from the files
:mod:`langchain_aligner.records` reads (JSON, JSONL, Parquet, gzip'd)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from langchain_aligner import records as record_files

__all__ = [
    "DEFAULT_FIELDS",
    "EvalRecord",
    "FieldMap",
    "load_records",
    "parse_field_map",
    "records_from_dicts",
]

FieldMap = Mapping[str, str]
"""Record attribute (``id``, ``q``, ``a``, ``ref``, ``c``) -> key in the source rows."""

DEFAULT_FIELDS: dict[str, str] = {
    "id": "id",
    "q": "question",
    "a": "answer",
    "ref": "reference",
    "c": "correction",
}
"""Keys of the records this package writes (``corrections.jsonl`` reads back with these)."""

_PRESETS = {
    "default": DEFAULT_FIELDS,
    # AlpacaEval's model_outputs.json of an Aligner run (records.ALPACA_EVAL_FIELDS), its output the reference
    "alpaca_eval": {
        "q": record_files.ALPACA_EVAL_FIELDS["question"],
        "a": record_files.ALPACA_EVAL_FIELDS["answer"],
        "ref": record_files.ALPACA_EVAL_FIELDS["correction"],
    },
}
_ATTRIBUTES = {"id": "id", "q": "question", "a": "answer", "ref": "reference", "c": "correction"}


class EvalRecord(BaseModel):
    """One item to evaluate: a question, the upstream answer and, optionally, a reference and a correction.

    ``reference`` is a reference answer/correction (honesty judging and reference metrics use it);
    ``correction`` is an existing correction (then no Aligner needs to run).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    answer: str
    reference: str | None = None
    correction: str | None = None


def parse_field_map(spec: str | None) -> dict[str, str]:
    """Parse ``"q=instruction,a=original_output,ref=output"`` or a preset name (``default``, ``alpaca_eval``).

    Attributes left out keep their default keys (``q=question``, ``a=answer``, ``ref=reference``,
    ``c=correction``, ``id=id``); ``ref=`` or ``c=`` with no key turns that attribute off.
    """
    if spec is None or spec.strip() in ("", "default"):
        return dict(DEFAULT_FIELDS)
    if spec.strip() in _PRESETS:
        return {**DEFAULT_FIELDS, **_PRESETS[spec.strip()]}
    fields = dict(DEFAULT_FIELDS)
    for part in spec.split(","):
        name, sep, key = part.partition("=")
        name = name.strip()
        if not sep or name not in _ATTRIBUTES:
            raise ValueError(
                f"bad field mapping {part!r}: expected NAME=KEY with NAME one of {sorted(_ATTRIBUTES)}"
            )
        fields[name] = key.strip()
    return fields


def records_from_dicts(rows: Iterable[Mapping[str, Any]], fields: FieldMap | None = None) -> list[EvalRecord]:
    """Build records from rows; the question and answer keys are required, the others optional.

    Raises:
        ValueError: a row lacks the question or answer key, or a mapped value is not a string.
    """
    fields = {**DEFAULT_FIELDS, **(fields or {})}
    records = []
    for index, row in enumerate(rows):
        values: dict[str, Any] = {"id": str(row.get(fields["id"], index)) if fields["id"] else str(index)}
        for name in ("q", "a", "ref", "c"):
            key = fields[name]
            value = row.get(key) if key else None
            if value is None:
                if name in ("q", "a"):
                    raise ValueError(f"record {index} has no {key!r} field (its keys: {sorted(row)})")
                continue
            if not isinstance(value, str):
                raise ValueError(f"record {index}: field {key!r} is {type(value).__name__}, not a string")
            values[_ATTRIBUTES[name]] = value
        records.append(EvalRecord(**values))
    return records


def load_records(
    path: str | Path, fields: FieldMap | None = None, *, limit: int | None = None
) -> list[EvalRecord]:
    """Read records from a ``.json`` list, a ``.jsonl`` file (each optionally gzip'd) or a ``.parquet`` file,
    through :func:`langchain_aligner.records.read_rows`.

    Args:
        path: The file.
        fields: The field map (see :func:`parse_field_map`); default keys when ``None``.
        limit: Keep only the first ``limit`` records.

    Raises:
        langchain_aligner.records.RecordError: A row that is not an object or not JSON, naming the file and
            line (a ``ValueError``; ``RecordFileNotFound``, also a ``FileNotFoundError``, for a missing file).
    """
    rows = record_files.read_objects(path)
    return records_from_dicts(rows[:limit] if limit is not None else rows, fields)
