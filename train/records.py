"""Q-A-C records: the one sample format of Aligner training, read and written with validation.

A record is a ``question``, the upstream model's ``answer`` and its ``correction`` (the official Aligner
sample format). Files are JSON (a list of objects), JSONL (one object per line) or Parquet; ``.json.gz`` and
``.jsonl.gz`` are read transparently. A bad record is reported with its file and position: the 1-based line
of a JSONL file, the 0-based index of a JSON list or Parquet row.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import random
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from train.errors import InputFileNotFound, TrainingInputError

__all__ = [
    "FIELDS",
    "QACRecord",
    "RecordError",
    "Records",
    "identity_warmup",
    "parse_rows",
    "read_records",
    "read_rows",
    "write_records",
]

logger = logging.getLogger(__name__)

FIELDS = ("question", "answer", "correction")
"""The fields of a record, in order."""


class QACRecord(BaseModel):
    """A question-answer-correction triple; each field a non-empty string, surrounding whitespace removed."""

    model_config = ConfigDict(frozen=True, str_strip_whitespace=True, extra="forbid")

    question: str
    answer: str
    correction: str

    @field_validator(*FIELDS)
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must be a non-empty string")
        return value


class RecordError(TrainingInputError, ValueError):
    """A bad record: ``path``, its ``line`` (1-based for JSONL, an index otherwise) and ``reason``."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.location}: {reason}")

    @property
    def location(self) -> str:
        """``file:line`` for a JSONL line, ``file[index]`` for an item of a list or table."""
        if self.line is None:
            return self.path
        is_jsonl = self.path.endswith((".jsonl", ".jsonl.gz"))
        return f"{self.path}:{self.line}" if is_jsonl else f"{self.path}[{self.line}]"


class Records(list[QACRecord]):
    """A list of records that also tells which input records were skipped and why (``skipped``)."""

    def __init__(self, records: Iterable[QACRecord] = (), skipped: Iterable[RecordError] = ()) -> None:
        super().__init__(records)
        self.skipped: list[RecordError] = list(skipped)


def read_records(
    path: str | Path,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    fields: Mapping[str, str] | None = None,
) -> Records:
    """Read Q-A-C records from a ``.json``, ``.jsonl``, ``.parquet`` file (``.json.gz``/``.jsonl.gz`` too).

    Args:
        path: The file to read.
        on_error: ``"raise"`` stops at the first bad record with a :class:`RecordError` naming the file and
            line; ``"skip"`` logs each bad record (``file:line: reason``), keeps every good one and lists the
            bad ones in the result's ``skipped``.
        fields: Maps our field names to the file's column names, e.g.
            ``{"question": "instruction", "answer": "original_output", "correction": "output"}``;
            fields not named keep their own name. Other columns of the file are ignored.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file type is not supported, or ``fields`` names an unknown field.
        RecordError: A bad record and ``on_error="raise"``, or the file as a whole cannot be parsed.
    """
    return parse_rows(read_rows(path), path, on_error=on_error, fields=fields)


def parse_rows(
    rows: Iterable[tuple[int, Any]],
    source: str | Path,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    fields: Mapping[str, str] | None = None,
) -> Records:
    """Validate ``(position, row)`` pairs into records; errors name ``source`` and the position.

    ``row`` is a mapping (or a :class:`RecordError` a reader produced for an unparsable line). Arguments as
    in :func:`read_records`.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    columns = _columns(fields)
    records = Records()
    for position, row in rows:
        try:
            records.append(_record(row, columns, source, position))
        except RecordError as error:
            if on_error == "raise":
                raise
            logger.warning("skipping record %s", error)
            records.skipped.append(error)
    if records.skipped:
        total = len(records) + len(records.skipped)
        logger.warning("%s: skipped %d of %d records", source, len(records.skipped), total)
    return records


def write_records(records: Iterable[QACRecord], path: str | Path) -> None:
    """Write records as JSONL (``.jsonl`` or gzip'd ``.jsonl.gz``), atomically: all or nothing is seen."""
    path = Path(path)
    if not path.name.endswith((".jsonl", ".jsonl.gz")):
        raise ValueError(f"records are written as JSONL: expected a .jsonl or .jsonl.gz path, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with gzip.open(temp, "wb") if path.name.endswith(".gz") else open(temp, "wb") as stream:
            for record in records:
                stream.write(record.model_dump_json().encode() + b"\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def identity_warmup(
    records: Sequence[QACRecord], share: float, *, seed: int, keep_all: bool = False
) -> tuple[list[QACRecord], list[QACRecord]]:
    """Split records for an identity warm-up: ``(warm-up Q-A-A records, main Q-A-C records)``.

    A ``share`` of the records, drawn at random (deterministic for a given ``seed``), becomes Q-A-A records
    whose correction is the answer itself: trained first, they teach the Aligner to copy an answer before
    it learns to correct one (the paper found a share of about 20% best). The main records are the others,
    or all records with ``keep_all=True``. Both lists keep the input order.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be between 0 and 1, got {share}")
    chosen = set(random.Random(seed).sample(range(len(records)), round(share * len(records))))
    warmup = [records[i].model_copy(update={"correction": records[i].answer}) for i in sorted(chosen)]
    main = [r for i, r in enumerate(records) if keep_all or i not in chosen]
    return warmup, main


def _columns(fields: Mapping[str, str] | None) -> dict[str, str]:
    unknown = set(fields or ()) - set(FIELDS)
    if unknown:
        raise ValueError(f"fields maps unknown field(s) {sorted(unknown)}; known: {list(FIELDS)}")
    return {name: (fields or {}).get(name, name) for name in FIELDS}


def _record(row: Any, columns: Mapping[str, str], source: str | Path, position: int) -> QACRecord:
    if isinstance(row, RecordError):
        raise row
    if not isinstance(row, Mapping):
        raise RecordError(source, position, f"expected an object, got {type(row).__name__}")
    missing = [column for column in columns.values() if column not in row]
    if missing:
        raise RecordError(source, position, f"missing field(s) {missing}")
    try:
        return QACRecord(**{name: row[column] for name, column in columns.items()})
    except ValidationError as error:
        reasons = "; ".join(
            f"{columns[str(e['loc'][0])]}: {e['msg'].removeprefix('Value error, ')}" for e in error.errors()
        )
        raise RecordError(source, position, reasons) from None


def _open(path: Path) -> gzip.GzipFile | io.BufferedReader:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """The raw rows of a JSON, JSONL or Parquet file as ``(position, row)`` pairs, positions as in
    :class:`RecordError`; an unparsable JSONL line comes as a :class:`RecordError` in place of its row."""
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFound(f"no such data file: {path}")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _jsonl_rows(path)
    if name.endswith((".json", ".json.gz")):
        return _json_rows(path)
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return enumerate(pq.read_table(path).to_pylist())
    raise ValueError(
        f"unsupported records file {path}: expected .json, .jsonl, .parquet (or .json.gz, .jsonl.gz)"
    )


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with _open(path) as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                yield number, RecordError(path, number, f"invalid JSON: {error.msg}")
            except UnicodeDecodeError as error:
                yield number, RecordError(path, number, _not_utf8(error))


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with _open(path) as stream:
        text = stream.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(path, None, f"invalid JSON at line {error.lineno}: {error.msg}") from None
    except UnicodeDecodeError as error:
        line = text.count(b"\n", 0, error.start) + 1
        raise RecordError(path, None, f"line {line}: {_not_utf8(error)}") from None
    if not isinstance(data, list):
        raise RecordError(path, None, f"expected a JSON list of records, got {type(data).__name__}")
    return enumerate(data)


def _not_utf8(error: UnicodeDecodeError) -> str:
    """Why text is not UTF-8: its first bad byte."""
    byte = error.object[error.start : error.start + 1]
    return f"not UTF-8 text: byte 0x{byte.hex()} ({error.reason})"
