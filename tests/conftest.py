"""Shared fixtures. Keep one fixture per concept, with a docstring; add new ones below the existing ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langchain_aligner.testing.fake_servers import FakeServer, start_fake_server


@pytest.fixture(scope="session")
def _tgi_server() -> Iterator[FakeServer]:
    server = start_fake_server("tgi")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _openai_server() -> Iterator[FakeServer]:
    server = start_fake_server("openai")
    yield server
    server.stop()


@pytest.fixture
def tgi_server(_tgi_server: FakeServer) -> FakeServer:
    """A fake TGI server on 127.0.0.1 (:mod:`langchain_aligner.testing.fake_servers`), its script reset for
    this test."""
    _tgi_server.reset()
    return _tgi_server


@pytest.fixture
def openai_server(_openai_server: FakeServer) -> FakeServer:
    """A fake OpenAI-compatible ``/v1/completions`` server on 127.0.0.1, its script reset for this test."""
    _openai_server.reset()
    return _openai_server


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (2 layers, hidden size 32) and a small BPE tokenizer, saved in the export layout
    (:func:`langchain_aligner.testing.save_tiny_llama`, which the benchmarks use too).

    Built offline from a config: no hub access. Its output is random but deterministic for a given seed.
    """
    from langchain_aligner.testing import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def printable_llama_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama, its output weights zeroed for every token that is not printable ASCII text.

    Random weights otherwise pick byte tokens that never complete a UTF-8 character: their stream texts
    are empty while the whole text decodes them as U+FFFD, so streamed pieces would not add up. Zeroed rows
    get logit 0, below the best of the random others, so greedy decoding never picks them.
    """
    import torch

    from langchain_aligner.models import load_model_and_tokenizer

    target = tmp_path_factory.mktemp("printable-llama")
    model, tokenizer = load_model_and_tokenizer(tiny_llama_dir)
    texts = [str(tokenizer.decode([i])) for i in range(len(tokenizer))]
    unprintable = [i for i, text in enumerate(texts) if not (text.isascii() and text.isprintable())]
    with torch.no_grad():
        model.lm_head.weight[unprintable] = 0
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def preference_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight preference pairs: a careful correction chosen over a curt original answer."""
    from langchain_aligner_train.preference import Correction, build_preference_data

    triples = [
        Correction(f"How do I do task {i}?", f"No {i}.", f"Here are the safe steps for task {i}, one by one.")
        for i in range(8)
    ]
    target = tmp_path_factory.mktemp("preference")
    build_preference_data(triples).write(target)
    return target


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> Any:
    """SmolLM2's tokenizer (byte-level BPE, no BOS, EOS ``<|im_end|>``), from the embedded default model."""
    from transformers import AutoTokenizer

    from langchain_aligner.models import default_model_dir

    return AutoTokenizer.from_pretrained(default_model_dir())
