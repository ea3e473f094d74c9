"""Where the repository's folders are, for tests that run its scripts or read the shared data beside it."""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
"""The repository's root (the checkout)."""
EXAMPLES = REPOSITORY / "examples"
BENCHMARKS = REPOSITORY / "benchmarks"
SHARED = REPOSITORY.parent / "shared"
"""``../shared`` beside the checkout: the real data (``data/``) and reference documents (``reference/``)."""
