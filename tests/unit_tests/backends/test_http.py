"""The HTTP backends' factory: what it refuses before any request is sent."""

from __future__ import annotations

import pytest

from langchain_aligner.backends import make_backend


def test_factory_rejects_unknown_kinds_and_missing_urls() -> None:
    with pytest.raises(ValueError, match="unknown backend kind"):
        make_backend("vllm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a url"):
        make_backend("tgi")
