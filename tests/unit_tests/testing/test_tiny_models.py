"""langchain_aligner.testing: the tiny Llama and random LoRA adapters that tests and benchmarks share are
built in one place, deterministically."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from langchain_aligner.models import load_model_and_tokenizer
from langchain_aligner.testing import random_llama, save_random_adapter, save_tiny_llama


def test_the_tiny_llama_is_the_same_every_time(tiny_llama_dir: Path, tmp_path: Path) -> None:
    again = save_tiny_llama(tmp_path / "again")
    first, second = (load_file(d / "model.safetensors") for d in (tiny_llama_dir, again))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert (again / "tokenizer.json").read_text() == (tiny_llama_dir / "tokenizer.json").read_text()
    model, tokenizer = load_model_and_tokenizer(again)
    assert model.config.num_hidden_layers == 2 and len(tokenizer) == model.config.vocab_size == 300


def test_a_random_llama_fits_its_tokenizer_and_an_adapter_changes_the_model(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    model, tokenizer = load_model_and_tokenizer(tiny_llama_dir)
    bigger = random_llama(tokenizer, hidden_size=64, intermediate_size=128, layers=3, seed=1)
    assert (bigger.config.vocab_size, bigger.config.eos_token_id) == (len(tokenizer), tokenizer.eos_token_id)
    assert bigger.config.num_hidden_layers == 3
    adapter = load_file(
        save_random_adapter(tiny_llama_dir, tmp_path / "a", seed=2) / "adapter_model.safetensors"
    )
    assert adapter and all(bool(tensor.abs().sum() > 0) for tensor in adapter.values())
