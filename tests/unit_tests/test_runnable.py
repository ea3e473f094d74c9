"""AlignerRunnable: what it refuses as it is built, before any backend is called."""

from __future__ import annotations

import pytest

from langchain_aligner import AlignerRunnable


def test_unknown_template_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown template"):
        AlignerRunnable(url="http://127.0.0.1:1", template="nope")
