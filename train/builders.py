"""Dataset builders: Q-A-C records from local files, preference datasets and hub datasets.

Each builder returns :class:`langchain_aligner.records.Records` (a ``list[QACRecord]`` whose ``skipped``
lists every input row that was left out, with its position and reason). ``on_error="raise"`` (the default
for plain Q-A-C files) stops at the first bad row; the preference builders default to ``"skip"``: those
datasets hold pairs that make no correction (identical responses, diverging dialogues), which are dropped
and counted.

:func:`build_dataset` reads the ``data:`` list of a training config: one :class:`DataSource` per source.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from langchain_aligner import quality
from langchain_aligner.records import (
    ALPACA_EVAL_FIELDS,
    QACRecord,
    RecordError,
    Records,
    parse_rows,
    read_records,
    read_rows,
)

from .errors import ConfigError, InputFileNotFound, validation_summary

__all__ = [
    "DataSource",
    "build_dataset",
    "data_sources",
    "from_alpaca_eval",
    "from_alpaca_eval_annotations",
    "alpaca_eval_outputs",
    "from_hh_rlhf",
    "from_hub",
    "from_jailbreakbench",
    "from_json_records",
    "from_pandalm",
    "from_pku_saferlhf",
]

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
Rows = Iterable[Mapping[str, Any]]
BuilderName = Literal["qac", "hh_rlhf", "pku_saferlhf", "alpaca_eval"]
SourceKind = Literal[
    "jsonl",
    "json",
    "parquet",
    "hh_rlhf",
    "pku_saferlhf",
    "alpaca_eval",
    "alpaca_eval_annotations",
    "pandalm",
    "jailbreakbench",
    "hub",
    "mix",
]


_HUMAN = "\n\nHuman:"
_ASSISTANT = "\n\nAssistant:"


def from_json_records(
    path: str | Path, *, fields: Mapping[str, str] | None = None, on_error: OnError = "raise"
) -> Records:
    """Q-A-C records from a local JSON, JSONL or Parquet file; ``fields`` maps our names to its columns."""
    return read_records(path, on_error=on_error, fields=fields)


def from_alpaca_eval(path: str | Path, *, on_error: OnError = "raise") -> Records:
    """Records from AlpacaEval-style ``instruction``/``original_output``/``output`` rows (``.json[.gz]``)."""
    return read_records(path, on_error=on_error, fields=ALPACA_EVAL_FIELDS)


def from_hh_rlhf(source: str | Path | Rows, *, on_error: OnError = "skip") -> Records:
    """Records from HH-RLHF ``{"chosen", "rejected"}`` dialogues (``\\n\\nHuman: ...\\n\\nAssistant: ...``).

    The dialogue the two share up to the last Assistant turn is the question: a single turn is the human's
    text alone, a longer dialogue keeps its ``Human:``/``Assistant:`` turns, one per paragraph. The rejected
    last turn is the answer, the chosen one the correction. Pairs whose contexts differ or whose last turns
    are identical make no correction: they are skipped and listed in ``skipped``. (In the prompt, the
    template escapes its own role markers, ``Assistant:`` included, exactly as at inference.)
    """
    return _convert(source, _hh_rlhf_row, on_error)


def from_pku_saferlhf(
    source: str | Path | Rows,
    *,
    prefer: Literal["better", "safer", "both"] = "better",
    on_error: OnError = "skip",
) -> Records:
    """Records from PKU-SafeRLHF-style rows: ``prompt``, ``response_0``, ``response_1``,
    ``better_response_id`` and optionally ``safer_response_id``.

    The preferred response is the correction, the other one the answer. ``prefer`` picks the preference:
    ``"better"`` (``better_response_id``), ``"safer"`` (``safer_response_id``) or ``"both"`` (only rows where
    the two agree). Rows with identical responses or no usable preference are skipped, listed in ``skipped``.
    """
    return _convert(source, lambda row: _pku_saferlhf_row(row, prefer), on_error)


def from_pandalm(source: str | Path | Rows, *, on_error: OnError = "skip") -> Records:
    """Records from PandaLM test rows: ``instruction``, ``input``, ``response1``, ``response2``,
    ``annotator1..3`` (1 or 2 = that response is better, 0 = tie).

    The question is the instruction, followed by the input (if any) after a blank line. The response that at
    least two annotators prefer is the correction, the other the answer; rows without such a majority or with
    identical responses are skipped.
    """
    return _convert(source, _pandalm_row, on_error)


def from_alpaca_eval_annotations(source: str | Path | Rows, *, on_error: OnError = "skip") -> Records:
    """Records from AlpacaEval pairwise annotations (``instruction``, ``output_1``, ``output_2``,
    ``preference``).

    ``preference`` runs from 1 (``output_1`` better) to 2 (``output_2`` better). In AlpacaEval's annotation
    files ``output_1`` is the reference model's (``gpt4_1106_preview``) and ``output_2`` the named model's,
    so a weak model's file gives weak -> strong corrections: ``output_2`` is the answer and ``output_1`` the
    correction, kept only where the annotator prefers ``output_1`` (``preference < 1.5``).
    """
    return _convert(source, _alpaca_eval_annotation_row, on_error)


def alpaca_eval_outputs(source: str | Path | Rows, *, on_error: OnError = "skip") -> Records:
    """Identity records (question = ``instruction``, answer = correction = ``output``) from an AlpacaEval
    ``model_outputs.json``: a strong model's answer to a benign instruction is kept as is."""
    return _convert(source, _alpaca_eval_output_row, on_error)


def from_jailbreakbench(
    source: str | Path | Rows,
    *,
    is_refusal: Callable[[str], bool] = quality.is_refusal,
    on_error: OnError = "skip",
) -> Records:
    """Safety records from JailbreakBench attack artifacts: a directory of ``*.json`` files, a file, or rows.

    Each artifact row has a ``goal`` (the harmful request in plain words), the target model's ``response`` and
    ``jailbroken``. A jailbroken response is the answer, the question its plain ``goal`` (not the adversarial
    prompt), and the correction a response to the same goal that was *not* jailbroken and that ``is_refusal``
    accepts (default: :func:`langchain_aligner.quality.is_refusal`); the refusals of a goal are used in turn.
    A jailbroken text is never a correction. Rows that are not jailbroken (they are the corrections), have no
    response, or whose goal has no refusal are skipped and counted.
    """
    rows = list(_jailbreakbench_rows(source))
    refusals: dict[str, list[str]] = {}
    for _, _, row in rows:
        response = row.get("response")
        if not row.get("jailbroken") and isinstance(response, str) and response.strip():
            if is_refusal(response):
                refusals.setdefault(str(row.get("goal")), []).append(response)
    used: Counter[str] = Counter()

    def convert(row: Mapping[str, Any]) -> dict[str, str]:
        if row.get("response") is None:
            raise ValueError("no response")
        goal, response = _strings(row, "goal", "response")
        if not row.get("jailbroken"):
            raise ValueError("not jailbroken: a refusal, not an answer to correct")
        choices = refusals.get(goal)
        if not choices:
            raise ValueError("no refusal for this goal")
        correction = choices[used[goal] % len(choices)]
        used[goal] += 1
        return {"question": goal, "answer": response, "correction": correction}

    name = str(source) if isinstance(source, (str, Path)) else "<rows>"
    records = Records()
    for file, group in _group_by_file(rows):
        loaded = _convert([row for _, row in group], convert, on_error, name=file)
        records.extend(loaded)
        records.skipped.extend(loaded.skipped)
    logger.info("%s: %d jailbreak corrections, %d skipped", name, len(records), len(records.skipped))
    return records


def jailbreakbench_refusals(source: str | Path | Rows, *, is_refusal: Callable[[str], bool]) -> Records:
    """Identity records (question = goal, answer = correction = the refusal) from JailbreakBench's responses
    that were not jailbroken and that ``is_refusal`` accepts: a refusal to a harmful request is kept as is."""
    records = Records()
    for _, _, row in _jailbreakbench_rows(source):
        response, goal = row.get("response"), row.get("goal")
        if row.get("jailbroken") or not isinstance(response, str) or not isinstance(goal, str):
            continue
        if response.strip() and is_refusal(response):
            records.append(QACRecord(question=goal, answer=response, correction=response))
    return records


def from_hub(
    name: str,
    split: str = "train",
    *,
    builder: BuilderName = "qac",
    fields: Mapping[str, str] | None = None,
    on_error: OnError = "skip",
    **load_kwargs: Any,
) -> Records:
    """Records from a hub dataset: :func:`datasets.load_dataset` of ``name``, ``split`` and ``load_kwargs``.

    ``builder`` names the row format: ``"qac"`` (``question``/``answer``/``correction``, renamed by
    ``fields``), ``"hh_rlhf"``, ``"pku_saferlhf"`` (by ``better_response_id``) or ``"alpaca_eval"``.

    Raises:
        ConnectionError: The hub cannot be reached (offline, ``HF_HUB_OFFLINE=1``, no network); download the
            dataset where it can be and use a local file instead.
    """
    if builder not in get_args(BuilderName):
        raise ValueError(f"unknown builder {builder!r}; known: {list(get_args(BuilderName))}")
    if fields and builder != "qac":
        raise ValueError(f"'fields' applies to the 'qac' builder only, not {builder!r}")
    import datasets

    try:
        rows = datasets.load_dataset(name, split=split, **load_kwargs)
    except ConnectionError as error:
        raise ConnectionError(
            f"cannot load dataset {name!r} (split {split!r}) from the Hugging Face Hub: {error}. Without a "
            "reachable hub, save it as JSONL/JSON/Parquet elsewhere and use a local data source."
        ) from error
    source = f"{name}[{split}]"
    if builder == "hh_rlhf":
        return _convert(rows, _hh_rlhf_row, on_error, name=source)
    if builder == "pku_saferlhf":
        return _convert(rows, lambda row: _pku_saferlhf_row(row, "better"), on_error, name=source)
    fields = ALPACA_EVAL_FIELDS if builder == "alpaca_eval" else fields
    return parse_rows(enumerate(rows), source, on_error=on_error, fields=fields)


class DataSource(BaseModel):
    """One data source of a training config, e.g. ``{"kind": "hh_rlhf", "path": "harmless.jsonl.gz"}``.

    ``kind`` is a local file format (``jsonl``, ``json``, ``parquet``: Q-A-C rows, renamed by ``fields``), a
    preference format read from ``path`` (``hh_rlhf``, ``pku_saferlhf``, ``alpaca_eval``,
    ``alpaca_eval_annotations``, ``pandalm``, ``jailbreakbench``: a file or a directory of artifacts),
    ``hub``: the dataset ``name`` and ``split`` loaded with :func:`datasets.load_dataset`, rows in the
    ``builder`` format, or ``mix``: the named mix ``name`` of :mod:`.mixes` built from the data
    directory ``path``, its ``split`` ``train`` or ``held_out``.
    ``limit`` keeps the first records only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SourceKind
    path: str | None = None
    name: str | None = None
    split: str = "train"
    fields: dict[str, str] | None = None
    builder: BuilderName = "qac"
    limit: int | None = Field(default=None, gt=0)
    on_error: OnError | None = None
    """``None``: the builder's default (``raise`` for Q-A-C files, ``skip`` for preference data and hubs)."""

    @model_validator(mode="after")
    def _check_location(self) -> DataSource:
        if self.kind == "mix":
            if not self.name or not self.path or self.split not in ("train", "held_out"):
                raise ValueError(
                    "a mix source needs the mix 'name', the data directory as 'path' and a 'split' "
                    "('train' or 'held_out')"
                )
        elif self.kind == "hub":
            if not self.name or self.path:
                raise ValueError("a hub source needs a dataset 'name' and no 'path'")
        elif not self.path or self.name:
            raise ValueError(f"a {self.kind} source needs a 'path' and no 'name'")
        elif self.kind in ("jsonl", "json", "parquet"):
            _check_suffix(self.path, self.kind)
        if self.fields and self.kind not in ("jsonl", "json", "parquet", "hub"):
            raise ValueError(f"'fields' does not apply to a {self.kind} source")
        if self.fields and self.kind == "hub" and self.builder != "qac":
            raise ValueError(f"'fields' does not apply to the {self.builder} builder")
        if self.kind != "hub" and self.builder != "qac":  # qac, the default, is what a file source reads
            raise ValueError("'builder' applies only to a hub source")
        return self

    def load(self) -> Records:
        """Read this source's records."""
        options: dict[str, Any] = {} if self.on_error is None else {"on_error": self.on_error}
        if self.kind == "mix":
            from .mixes import build_mix

            assert self.name is not None and self.path is not None
            mix = build_mix(self.name, self.path)
            records = Records(mix.training_records() if self.split == "train" else mix.held_out_records())
        elif self.kind == "hub":
            assert self.name is not None
            records = from_hub(self.name, self.split, builder=self.builder, fields=self.fields, **options)
        else:
            assert self.path is not None
            if self.kind in ("jsonl", "json", "parquet"):
                records = from_json_records(self.path, fields=self.fields, **options)
            elif self.kind == "hh_rlhf":
                records = from_hh_rlhf(self.path, **options)
            elif self.kind == "pku_saferlhf":
                records = from_pku_saferlhf(self.path, **options)
            elif self.kind == "pandalm":
                records = from_pandalm(self.path, **options)
            elif self.kind == "alpaca_eval_annotations":
                records = from_alpaca_eval_annotations(self.path, **options)
            elif self.kind == "jailbreakbench":
                records = from_jailbreakbench(self.path, **options)
            else:
                records = from_alpaca_eval(self.path, **options)
        if self.limit is not None and len(records) > self.limit:
            records = Records(records[: self.limit], records.skipped)
        return records


def build_dataset(
    config: DataSource | Mapping[str, Any] | Sequence[DataSource | Mapping[str, Any]],
) -> Records:
    """All records of one or more data sources (specs or :class:`DataSource`), in order, with their skips.

    Logs how many records each source gave and how many it skipped.
    """
    sources = data_sources(config)  # every spec checked before any data is read
    records = Records()
    for source in sources:
        loaded = source.load()
        logger.info(
            "%s %s: %d records, %d skipped",
            source.kind,
            source.path or source.name,
            len(loaded),
            len(loaded.skipped),
        )
        records.extend(loaded)
        records.skipped.extend(loaded.skipped)
    return records


def data_sources(
    config: DataSource | Mapping[str, Any] | Sequence[DataSource | Mapping[str, Any]],
) -> list[DataSource]:
    """One or more data source specs as :class:`DataSource` objects, every one validated.

    Raises:
        ValueError: No sources.
        ConfigError: A bad spec, in one line naming it as a config does (``data[1].kind: ...``).
    """
    specs = [config] if isinstance(config, (DataSource, Mapping)) else list(config)
    if not specs:
        raise ValueError("no data sources given")
    return [_data_source(spec, f"data[{i}]") for i, spec in enumerate(specs)]


def _data_source(spec: DataSource | Mapping[str, Any], key: str) -> DataSource:
    if isinstance(spec, DataSource):
        return spec
    try:
        return DataSource.model_validate(spec)
    except ValidationError as error:
        raise ConfigError(validation_summary(error, key)) from None


def _check_suffix(path: str, kind: str) -> None:
    suffixes = {"jsonl": (".jsonl", ".jsonl.gz"), "json": (".json", ".json.gz"), "parquet": (".parquet",)}
    if not path.lower().endswith(suffixes[kind]):
        raise ValueError(f"a {kind} source needs a {' or '.join(suffixes[kind])} file, got {path}")


def _convert(
    source: str | Path | Rows,
    convert: Callable[[Mapping[str, Any]], dict[str, str]],
    on_error: OnError,
    *,
    name: str | None = None,
) -> Records:
    """Convert rows (given, or read from a file) to records; a row ``convert`` rejects is a bad record."""
    if isinstance(source, (str, Path)):
        name, rows = str(source), read_rows(source)
    else:
        name, rows = name or "<rows>", enumerate(source)

    def converted() -> Iterator[tuple[int, Any]]:
        for position, row in rows:
            if isinstance(row, Mapping):
                try:
                    row = convert(row)
                except ValueError as error:
                    row = RecordError(name, position, str(error))
            yield position, row

    records = parse_rows(converted(), name, on_error=on_error)
    if records.skipped:
        reasons = Counter(error.reason for error in records.skipped)
        logger.warning("%s: skipped by reason: %s", name, dict(reasons.most_common()))
    return records


def _strings(row: Mapping[str, Any], *keys: str) -> list[str]:
    missing = [key for key in keys if key not in row]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    wrong = [key for key in keys if not isinstance(row[key], str)]
    if wrong:
        raise ValueError(f"field(s) {wrong} must be strings")
    return [row[key] for key in keys]


def _hh_rlhf_row(row: Mapping[str, Any]) -> dict[str, str]:
    chosen, rejected = _strings(row, "chosen", "rejected")
    context, correction = _last_assistant_turn(chosen, "chosen")
    rejected_context, answer = _last_assistant_turn(rejected, "rejected")
    if context.strip() != rejected_context.strip():
        raise ValueError("chosen and rejected dialogues differ before the last Assistant turn")
    if correction.strip() == answer.strip():
        raise ValueError("chosen and rejected last turns are identical")
    return {"question": _readable_context(context), "answer": answer, "correction": correction}


def _last_assistant_turn(dialogue: str, which: str) -> tuple[str, str]:
    context, marker, last = dialogue.rpartition(_ASSISTANT)
    if not marker:
        raise ValueError(f"the {which} dialogue has no Assistant turn")
    return context, last


def _readable_context(context: str) -> str:
    """A single human turn as its text; a longer dialogue as its ``Human:``/``Assistant:`` paragraphs."""
    context = "\n\n" + context.lstrip("\n")
    if context.startswith(_HUMAN) and context.count(_HUMAN) == 1 and _ASSISTANT not in context:
        return context[len(_HUMAN) :]
    return context


def _pku_saferlhf_row(row: Mapping[str, Any], prefer: str) -> dict[str, str]:
    prompt, first, second = _strings(row, "prompt", "response_0", "response_1")
    keys = {"better": ["better_response_id"], "safer": ["safer_response_id"]}.get(
        prefer, ["better_response_id", "safer_response_id"]
    )
    choices = {_response_id(row, key) for key in keys}
    if len(choices) > 1:
        raise ValueError("the better and the safer response differ")
    if first.strip() == second.strip():
        raise ValueError("the two responses are identical")
    responses = (first, second)
    preferred = choices.pop()
    return {"question": prompt, "answer": responses[1 - preferred], "correction": responses[preferred]}


def _response_id(row: Mapping[str, Any], key: str) -> int:
    value = row.get(key)
    if value not in (0, 1) or isinstance(value, bool):
        raise ValueError(f"{key} must be 0 or 1, got {value!r}")
    return int(value)


def _pandalm_row(row: Mapping[str, Any]) -> dict[str, str]:
    instruction, first, second = _strings(row, "instruction", "response1", "response2")
    extra = row.get("input") or ""
    if not isinstance(extra, str):
        raise ValueError("field ['input'] must be a string")
    votes = Counter(row.get(f"annotator{i}") for i in (1, 2, 3))
    winner = next((choice for choice in (1, 2) if votes[choice] >= 2), None)
    if winner is None:
        raise ValueError("no majority preference")
    if first.strip() == second.strip():
        raise ValueError("the two responses are identical")
    question = f"{instruction.strip()}\n\n{extra.strip()}" if extra.strip() else instruction
    answer, correction = (second, first) if winner == 1 else (first, second)
    return {"question": question, "answer": answer, "correction": correction}


def _alpaca_eval_annotation_row(row: Mapping[str, Any]) -> dict[str, str]:
    instruction, reference, answer = _strings(row, "instruction", "output_1", "output_2")
    preference = row.get("preference")
    if not isinstance(preference, (int, float)) or isinstance(preference, bool):
        raise ValueError(f"preference must be a number, got {preference!r}")
    if preference >= 1.5:
        raise ValueError("the annotator prefers the upstream answer")
    if reference.strip() == answer.strip():
        raise ValueError("the two outputs are identical")
    return {"question": instruction, "answer": answer, "correction": reference}


def _alpaca_eval_output_row(row: Mapping[str, Any]) -> dict[str, str]:
    instruction, output = _strings(row, "instruction", "output")
    return {"question": instruction, "answer": output, "correction": output}


def _jailbreakbench_rows(source: str | Path | Rows) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    """``(file, position, row)`` of JailbreakBench artifacts: a directory of files, a file, or rows."""
    if not isinstance(source, (str, Path)):
        for position, row in enumerate(source):
            yield "<rows>", position, row
        return
    path = Path(source)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise InputFileNotFound(f"no JailbreakBench artifact (*.json) in {path}")
    for file in files:
        data = json.loads(file.read_text(encoding="utf-8"))
        jailbreaks = data.get("jailbreaks") if isinstance(data, dict) else data
        if not isinstance(jailbreaks, list):
            raise RecordError(file, None, "not a JailbreakBench artifact (no 'jailbreaks' list)")
        for position, row in enumerate(jailbreaks):
            yield str(file), position, row


def _group_by_file(
    rows: Sequence[tuple[str, int, Mapping[str, Any]]],
) -> Iterator[tuple[str, list[tuple[int, Mapping[str, Any]]]]]:
    for file, group in itertools.groupby(rows, key=lambda item: item[0]):
        yield file, [(position, row) for _, position, row in group]
