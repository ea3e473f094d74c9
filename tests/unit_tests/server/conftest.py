"""Fixtures of the server's unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from langchain_aligner.models import load_model_and_tokenizer


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir: Path) -> tuple[Any, Any]:
    """The tiny random Llama (``tiny_llama_dir``) loaded: ``(model, tokenizer)``, once per test module."""
    return load_model_and_tokenizer(tiny_llama_dir)
