"""Q-A-C records and their files: the one module that reads and writes them (training, evaluation and
preference data all build on it).

A record is a ``question``, the upstream model's ``answer`` and its ``correction`` (the official Aligner
sample format). Files are JSON (a list of objects), JSONL (one object per line) or Parquet; ``.json.gz`` and
``.jsonl.gz`` are read transparently. A bad row is reported with its file and position: the 1-based line of
a JSONL file, the 0-based index of a JSON list or Parquet row. Every file is written atomically (a temporary
file renamed into place): a reader sees all of it or none. :data:`ALPACA_EVAL_FIELDS` maps AlpacaEval's keys
to a record's.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

__all__ = [
    "ALPACA_EVAL_FIELDS",
    "FIELDS",
    "QACRecord",
    "RecordError",
    "RecordFileNotFound",
    "Records",
    "parse_rows",
    "read_objects",
    "read_records",
    "read_rows",
    "write_jsonl",
    "write_records",
    "write_text_atomic",
]

logger = logging.getLogger(__name__)

FIELDS = ("question", "answer", "correction")
"""The fields of a record, in order."""

ALPACA_EVAL_FIELDS = {"question": "instruction", "answer": "original_output", "correction": "output"}
"""AlpacaEval ``model_outputs.json`` of an Aligner run: the instruction, the upstream model's output (kept as
``original_output``) and the Aligner's corrected ``output``; a record's field -> the file's key."""


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


class RecordError(ValueError):
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


class RecordFileNotFound(RecordError, FileNotFoundError):
    """The records file does not exist."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, None, os.strerror(errno.ENOENT))  # "No such file or directory", as open says


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


def write_records(records: Iterable[QACRecord], path: str | Path) -> Path:
    """Write records as JSONL (``.jsonl`` or gzip'd ``.jsonl.gz``), atomically; returns the path."""
    if not Path(path).name.endswith((".jsonl", ".jsonl.gz")):
        raise ValueError(f"records are written as JSONL: expected a .jsonl or .jsonl.gz path, got {path}")
    return write_jsonl(records, path)


def write_jsonl(rows: Iterable[BaseModel | Mapping[str, Any] | Any], path: str | Path) -> Path:
    """Write ``rows`` as JSON Lines, atomically (a temporary file renamed into place: all or nothing is seen);
    returns the path. A row is a pydantic model, a dataclass or a mapping; ``.gz`` paths are gzip'd."""
    path = Path(path)
    with (
        _atomic(path) as temp,
        gzip.open(temp, "wb") if path.name.endswith(".gz") else open(temp, "wb") as out,
    ):
        for row in rows:
            out.write(_json_line(row).encode() + b"\n")
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`write_jsonl` writes; returns the path."""
    path = Path(path)
    with _atomic(path) as temp:
        temp.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; renamed onto ``path`` when the block ends without error,
    removed otherwise: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_objects(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a file :func:`read_rows` reads (JSONL, JSON list, Parquet), each one an object.

    Raises:
        RecordFileNotFound: No such file.
        RecordError: A row that is not a JSON object (naming the file and line or index).
    """
    rows = []
    for position, row in read_rows(path):
        if isinstance(row, RecordError):
            raise row
        if not isinstance(row, dict):
            raise RecordError(path, position, f"expected an object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _json_line(row: Any) -> str:
    if isinstance(row, BaseModel):
        return row.model_dump_json()
    if isinstance(row, Mapping):
        return json.dumps(dict(row), ensure_ascii=False)
    if is_dataclass(row) and not isinstance(row, type):
        return json.dumps(asdict(row), ensure_ascii=False)
    raise TypeError(f"a row is a pydantic model, a dataclass or a mapping, not {type(row).__name__}")


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
        raise RecordFileNotFound(path)
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
