"""``langchain-aligner export SRC OUT [--adapter A] [--dtype D]``, driven through its own argparse parser.

What it writes is loaded by the project's ``TransformersBackend`` and checked against the source model (or
the source with the adapter merged in this process), greedy, on the tiny random Llama from ``conftest.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from langchain_aligner import export_cli
from langchain_aligner.backends.transformers_local import TransformersBackend
from langchain_aligner.generation import GenerationParams
from langchain_aligner.models import load_model_and_tokenizer
from langchain_aligner.testing import save_random_adapter

PROMPT = "Edit the following Question-Answer pair to make it more helpful and harmless."
PARAMS = GenerationParams(max_new_tokens=8)


def export(*argv: str | Path) -> int:
    parser = argparse.ArgumentParser(prog="langchain-aligner export")
    export_cli.add_arguments(parser)
    return export_cli.run(parser.parse_args([str(a) for a in argv]))


def dtypes(directory: Path) -> set[torch.dtype]:
    with safe_open(str(directory / "model.safetensors"), framework="pt") as weights:
        return {weights.get_tensor(name).dtype for name in weights.keys()}


@pytest.fixture(scope="module")
def adapter(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter for the tiny Llama with random, non-zero weights."""
    return save_random_adapter(tiny_llama_dir, tmp_path_factory.mktemp("adapter"), alpha=16)


def test_export_serves_like_the_source(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export(tiny_llama_dir, tmp_path / "out", "--dtype", "float32") == 0
    assert "model.safetensors" in capsys.readouterr().out
    exported = TransformersBackend(tmp_path / "out").generate(PROMPT, PARAMS)
    source = TransformersBackend(tiny_llama_dir).generate(PROMPT, PARAMS)
    assert (exported.text, exported.completion_tokens, exported.finish_reason) == (
        source.text,
        source.completion_tokens,
        source.finish_reason,
    )


def test_export_merges_an_adapter(tiny_llama_dir: Path, adapter: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    assert export(tiny_llama_dir, tmp_path / "out", "--adapter", adapter, "--dtype", "float32") == 0
    base, tokenizer = load_model_and_tokenizer(tiny_llama_dir)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    inputs = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        ids = merged.generate(
            **inputs, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    expected = tokenizer.decode(ids[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    generation = TransformersBackend(tmp_path / "out", dtype="float32").generate(PROMPT, PARAMS)
    assert generation.text == expected
    exported, _ = load_model_and_tokenizer(tmp_path / "out")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(exported.state_dict()[name], merged.state_dict()[name])
    source, _ = load_model_and_tokenizer(tiny_llama_dir)
    assert not torch.equal(exported.state_dict()[name], source.state_dict()[name])


def test_export_writes_bfloat16_by_default(tiny_llama_dir: Path, tmp_path: Path) -> None:
    assert export(tiny_llama_dir, tmp_path / "out") == 0
    assert dtypes(tmp_path / "out") == {torch.bfloat16}
    backend = TransformersBackend(tmp_path / "out", dtype="bfloat16")
    generation = backend.generate(PROMPT, PARAMS)
    assert generation.prompt_tokens == backend.count_tokens(PROMPT)
    assert generation.completion_tokens is not None and 0 < generation.completion_tokens <= 8


def test_bad_paths_are_reported(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export(tmp_path / "missing", tmp_path / "out") == 1
    assert "no config.json" in capsys.readouterr().err
    assert export(tiny_llama_dir, tmp_path / "out", "--adapter", tmp_path) == 1
    assert "not a LoRA adapter" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("keep me")
    assert export(tiny_llama_dir, tmp_path) == 1
    assert "not an earlier export" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(SystemExit):
        export(tiny_llama_dir, tmp_path / "out", "--dtype", "int8")
    assert "invalid choice: 'int8'" in capsys.readouterr().err
