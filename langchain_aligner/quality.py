"""Is a correction usable at all? One rule for the runnable's guard and the quality benchmark.

A small Aligner can fail in two visible ways: it writes nothing, or it falls into a loop ("1. 1. 1. ...",
"A: A: A:"). :func:`correction_problem` names the failure (``"empty"`` or ``"degenerate"``) or returns
``None``. Degenerate means either that one word n-gram covers much of the text (a repeated phrase) or that
the text compresses far better than prose does (zlib ratio; natural text stays above ~0.3).
"""

from __future__ import annotations

import zlib
from collections import Counter
from typing import Literal

__all__ = ["CorrectionProblem", "correction_problem", "is_degenerate"]

CorrectionProblem = Literal["empty", "degenerate"]

MIN_WORDS_TO_JUDGE = 8
"""Shorter texts ("No.", "Paris.") are never called degenerate."""
NGRAM = 3
MAX_NGRAM_SHARE = 0.3
"""A single word 3-gram covering more than this share of the 3-grams (with at least 4 repeats) is a loop."""
MIN_COMPRESSION_RATIO = 0.2
"""compressed bytes / raw bytes below this (on texts of 200+ bytes) is a loop."""


def is_degenerate(text: str) -> bool:
    """True if ``text`` repeats one phrase over and over or compresses like a loop."""
    words = text.split()
    if len(words) < MIN_WORDS_TO_JUDGE:
        return False
    grams = Counter(tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1))
    top = grams.most_common(1)[0][1]
    if top >= 4 and top / sum(grams.values()) > MAX_NGRAM_SHARE:
        return True
    raw = text.encode()
    return len(raw) >= 200 and len(zlib.compress(raw, 9)) / len(raw) < MIN_COMPRESSION_RATIO


def correction_problem(text: str) -> CorrectionProblem | None:
    """``"empty"`` (nothing but whitespace), ``"degenerate"`` (:func:`is_degenerate`) or ``None`` (usable)."""
    if not text.strip():
        return "empty"
    return "degenerate" if is_degenerate(text) else None
