"""Named data mixes: the shared sources combined into one curated, split training set for an Aligner.

A mix reads the data sources under a data directory (``../shared/data`` in this project), sorts their records
into categories, caps lengths for the compute budget, drops duplicates, splits by question and takes a quota
of each category for training:

- ``harmful``: JailbreakBench, question = the plain goal, answer = a jailbroken response, correction = a
  refusal to the same goal (:func:`.builders.from_jailbreakbench`; a jailbroken text is never a
  correction); a mix may add short ones (:attr:`MixSpec.short_harmful`, :func:`plain_harmful_answer`);
- ``harmless_hh``: HH-RLHF harmless, answer = the rejected last turn, correction = the chosen (safer) one;
- ``helpful``: HH-RLHF helpful (three splits), PandaLM majority preference, AlpacaEval weak -> strong where
  GPT-4 Turbo prefers the strong answer;
- ``identity``: Q-A-A records (the paper's warm-up) on good answers: the preferred responses of the helpful
  sources, strong models' AlpacaEval answers to benign instructions and JailbreakBench's refusals, so that a
  good answer comes back intact (and an instruction is not refused for looking like a harmful one);
- ``aligner2b``: the official Aligner-2B's corrections of GPT-4 Turbo and Qwen1.5-72B on AlpacaEval.

The split is by question (:func:`is_held_out`: a hash of the normalised question), so a question, and a
JailbreakBench goal, is either in training or held out, in every category and every source at once.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from langchain_aligner.quality import is_refusal
from langchain_aligner.records import QACRecord, Records

from .builders import (
    alpaca_eval_outputs,
    from_alpaca_eval,
    from_alpaca_eval_annotations,
    from_hh_rlhf,
    from_jailbreakbench,
    from_pandalm,
    jailbreakbench_refusals,
)

__all__ = ["CATEGORIES", "MIXES", "Mix", "MixSpec", "build_mix", "is_held_out", "plain_harmful_answer"]

logger = logging.getLogger(__name__)

CATEGORIES = ("harmful", "harmless_hh", "helpful", "identity", "aligner2b")
"""The categories of a mix, in the order training and benchmarks list them."""

ALPACA_EVAL_WEAK_MODELS = (
    "alpaca-7b",
    "chatglm2-6b",
    "falcon-7b-instruct",
    "oasst-sft-pythia-12b",
    "pythia-12b-mix-sft",
    "text_davinci_001",
    "vicuna-7b",
)
"""The weak models whose AlpacaEval annotation files (against ``gpt4_1106_preview``) are in the data."""

ALPACA_EVAL_STRONG_MODELS = (
    "claude-2",
    "claude-3-5-sonnet-20240620",
    "gpt-4-turbo-2024-04-09",
    "gpt-4o-2024-05-13",
    "gpt4",
)
"""The strong models whose AlpacaEval answers (``model_outputs``) are identity records."""


@dataclass(frozen=True)
class MixSpec:
    """How a mix is cut: held-out share, length caps (characters) and training quotas per category."""

    held_out_share: float = 0.15
    """Share of questions held out (by hash, so the same for every run and every source)."""
    max_question_chars: int = 600
    max_answer_chars: int = 900
    max_correction_chars: int = 900
    max_per_goal: int = 6
    """At most this many JailbreakBench answers per goal in training (the goals are few)."""
    quotas: dict[str, int] = field(default_factory=dict)
    """Training records per category (drawn with ``seed``); a category not named keeps all its records."""
    short_harmful: int = 0
    """Further ``harmful`` training records whose answer is a jailbroken response without its "Sure, here is"
    opening, cut short (:func:`plain_harmful_answer`), drawn from the training split: every JailbreakBench
    answer opens the same way and runs long, and an Aligner trained on them alone refuses that shape and
    copies short, plain harmful answers."""
    seed: int = 42


MIXES: dict[str, MixSpec] = {
    # The embedded default's mix: about 3,750 records (~0.8M tokens), one epoch in 1.5 hours of a 2-core CPU.
    "aligner-tiny": MixSpec(
        max_per_goal=4,
        quotas={"harmful": 350, "harmless_hh": 600, "helpful": 1150, "identity": 1500, "aligner2b": 150},
    ),
    # The embedded default's second stage (train/configs/aligner-tiny-stage2.yaml): 2,100 other draws of the
    # same training split, weighted to benign answers kept or improved, to lower over-refusal.
    "aligner-tiny-stage2": MixSpec(
        max_per_goal=4,
        quotas={"harmful": 150, "harmless_hh": 100, "helpful": 700, "identity": 1000, "aligner2b": 150},
        seed=7,
    ),
    # An experiment (train/configs/aligner-tiny-plain-harmful.yaml, a third stage not in the recipe): short,
    # plain harmful answers beside draws weighted to good answers kept.
    "aligner-tiny-plain-harmful": MixSpec(
        max_per_goal=4,
        quotas={"harmful": 100, "harmless_hh": 100, "helpful": 300, "identity": 1100, "aligner2b": 150},
        short_harmful=120,
        seed=11,
    ),
}
"""The named mixes."""


@dataclass
class Mix:
    """A built mix: training and held-out records per category, and why records were left out."""

    train: dict[str, Records]
    held_out: dict[str, Records]
    skipped: Counter[str]

    def training_records(self, seed: int = 42) -> list[QACRecord]:
        """Every training record, categories interleaved in a seeded order."""
        records = [record for category in CATEGORIES for record in self.train.get(category, [])]
        random.Random(seed).shuffle(records)
        return records

    def held_out_records(self) -> list[QACRecord]:
        """Every held-out record, category by category."""
        return [record for category in CATEGORIES for record in self.held_out.get(category, [])]


def normalise_question(question: str) -> str:
    """The question as the split sees it: lower case, whitespace collapsed."""
    return " ".join(question.lower().split())


def is_held_out(question: str, share: float) -> bool:
    """True if ``question`` belongs to the held-out split (a hash of the normalised text below ``share``)."""
    digest = hashlib.sha256(normalise_question(question).encode()).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def build_mix(name: str = "aligner-tiny", data_dir: str | Path = "../shared/data") -> Mix:
    """Build the named mix (:data:`MIXES`) from the shared data sources under ``data_dir``."""
    if name not in MIXES:
        raise ValueError(f"unknown mix {name!r}; known: {sorted(MIXES)}")
    spec = MIXES[name]
    data = Path(data_dir)
    if not data.is_dir():
        raise FileNotFoundError(f"data directory not found: {data}")
    skipped: Counter[str] = Counter()
    categories = _read_sources(data, skipped)
    train: dict[str, Records] = {}
    held_out: dict[str, Records] = {}
    seen: set[tuple[str, str, str]] = set()
    for category in CATEGORIES:
        kept = _curate(categories[category], spec, category, seen, skipped)
        held_out[category] = Records(r for r in kept if is_held_out(r.question, spec.held_out_share))
        pool = [r for r in kept if not is_held_out(r.question, spec.held_out_share)]
        short: list[QACRecord] = []
        if category == "harmful":
            short = _short_harmful(pool, spec, skipped)
            pool = _cap_per_question(pool, spec.max_per_goal, skipped)
        quota = spec.quotas.get(category)
        if quota is not None and len(pool) > quota:
            skipped[f"{category}: over the quota"] += len(pool) - quota
            pool = random.Random(f"{spec.seed}-{category}").sample(pool, quota)
        train[category] = Records(pool + short)
    logger.info(
        "mix %s: train %s, held out %s",
        name,
        {c: len(r) for c, r in train.items()},
        {c: len(r) for c, r in held_out.items()},
    )
    return Mix(train, held_out, skipped)


def _read_sources(data: Path, skipped: Counter[str]) -> dict[str, list[QACRecord]]:
    def count(category: str, records: Records) -> Records:
        for error in records.skipped:
            skipped[f"{category}: {error.reason}"] += 1
        return records

    jailbreaks = data / "jailbreakbench"
    harmful = count("harmful", from_jailbreakbench(jailbreaks, is_refusal=is_refusal))
    harmless = count("harmless_hh", from_hh_rlhf(data / "hh_rlhf" / "harmless-base-test.jsonl.gz"))
    helpful: list[QACRecord] = []
    for split in ("helpful-base_test", "helpful-online_test", "helpful-rejection-sampled_test"):
        helpful += count("helpful", from_hh_rlhf(data / "hh_rlhf" / f"{split}.jsonl.gz"))
    helpful += count("helpful", from_pandalm(data / "pandalm" / "testset-v1.json"))
    for model in ALPACA_EVAL_WEAK_MODELS:
        path = data / "alpaca_eval_models" / f"{model}__weighted_alpaca_eval_gpt4_turbo__annotations.json.gz"
        helpful += count("helpful", from_alpaca_eval_annotations(path))
    aligner2b: list[QACRecord] = []
    for path in sorted((data / "alpaca_eval_aligner2b").glob("aligner-2b_*.json.gz")):
        aligner2b += count("aligner2b", from_alpaca_eval(path, on_error="skip"))
    helpful = _without_refusals(helpful, "helpful", skipped)
    identity = [_identity(r.question, r.correction) for r in helpful]
    for model in ALPACA_EVAL_STRONG_MODELS:
        path = data / "alpaca_eval_models" / f"{model}__model_outputs.json.gz"
        identity += _without_refusals(count("identity", alpaca_eval_outputs(path)), "identity", skipped)
    identity += jailbreakbench_refusals(jailbreaks, is_refusal=is_refusal)
    return {
        "harmful": list(harmful),
        "harmless_hh": list(harmless),
        "helpful": helpful,
        "identity": identity,
        "aligner2b": aligner2b,
    }


def _without_refusals(records: Iterable[QACRecord], category: str, skipped: Counter[str]) -> list[QACRecord]:
    """The records of helpfulness sources whose correction does not refuse: a refusal is neither a
    helpfulness edit nor a good answer to keep, and would teach the Aligner to refuse benign requests."""
    kept = []
    for record in records:
        if is_refusal(record.correction):
            skipped[f"{category}: the correction refuses"] += 1
            continue
        kept.append(record)
    return kept


def _identity(question: str, answer: str) -> QACRecord:
    return QACRecord(question=question, answer=answer, correction=answer)


def _curate(
    records: Iterable[QACRecord],
    spec: MixSpec,
    category: str,
    seen: set[tuple[str, str, str]],
    skipped: Counter[str],
) -> list[QACRecord]:
    """Drop over-long records and duplicates (across categories too), counting each reason."""
    kept = []
    for record in records:
        reason = _length_problem(record, spec)
        key = (normalise_question(record.question), record.answer, record.correction)
        if reason is None and key in seen:
            reason = "duplicate"
        if reason is not None:
            skipped[f"{category}: {reason}"] += 1
            continue
        seen.add(key)
        kept.append(record)
    return kept


def _length_problem(record: QACRecord, spec: MixSpec) -> str | None:
    if len(record.question) > spec.max_question_chars:
        return "question too long"
    if len(record.answer) > spec.max_answer_chars:
        return "answer too long"
    if len(record.correction) > spec.max_correction_chars:
        return "correction too long"
    return None


_PREAMBLE = re.compile(r"^\s*(sure|certainly|of course|absolutely|okay|ok)\b[^\n]*\n", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n+")
_TRAILING_HEADING = re.compile(r"\s+[^.!?:\n]{1,40}:$")  # "... Step 2:" with nothing after it


def plain_harmful_answer(answer: str, max_chars: int = 300, min_chars: int = 60) -> str | None:
    """A jailbroken ``answer`` as a plain harmful answer: without its opening line of compliance ("Sure,
    here is ...:"), cut to its first whole sentences or lines within ``max_chars``; ``None`` when fewer than
    ``min_chars`` characters remain."""
    body = _PREAMBLE.sub("", answer, count=1).strip()
    kept = ""
    for piece in _SENTENCE_END.split(body):
        candidate = f"{kept} {piece.strip()}".strip()
        if len(candidate) > max_chars:
            break
        kept = candidate
    kept = _TRAILING_HEADING.sub("", kept)
    return kept if len(kept) >= min_chars else None


def _short_harmful(pool: list[QACRecord], spec: MixSpec, skipped: Counter[str]) -> list[QACRecord]:
    """``spec.short_harmful`` records of ``pool`` (harmful, training split) with plain, short answers."""
    if not spec.short_harmful:
        return []
    records, answers = [], set()
    for record in pool:
        answer = plain_harmful_answer(record.answer)
        if answer is None or answer in answers:
            skipped["harmful (short): " + ("too little left" if answer is None else "duplicate")] += 1
            continue
        answers.add(answer)
        records.append(QACRecord(question=record.question, answer=answer, correction=record.correction))
    if len(records) > spec.short_harmful:
        skipped["harmful (short): over the quota"] += len(records) - spec.short_harmful
        records = random.Random(f"{spec.seed}-short-harmful").sample(records, spec.short_harmful)
    return records


def _cap_per_question(records: list[QACRecord], cap: int, skipped: Counter[str]) -> list[QACRecord]:
    counts: Counter[str] = Counter()
    kept = []
    for record in records:
        key = normalise_question(record.question)
        if counts[key] >= cap:
            skipped["harmful: over the per-goal cap"] += 1
            continue
        counts[key] += 1
        kept.append(record)
    return kept
