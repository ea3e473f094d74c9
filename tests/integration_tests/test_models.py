"""The embedded default model's one-time conversion of SmolLM2's GGUF (about 30 s on 2 cores) into a temporary
cache, compared with the GGUF model, and the embedded adapter merged into its own directory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from langchain_aligner import models
from langchain_aligner.models import default_model_dir, is_exported_model, load_model_and_tokenizer
from langchain_aligner.testing import save_random_adapter
from tests.helpers.models import PROMPT, TGI_FILES, greedy_ids


@dataclass
class Conversion:
    """The default model converted into a temporary cache, and what the conversion loaded."""

    cache: Path
    directory: Path
    loaded: list[tuple[Path, Any, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def conversion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conversion]:
    """``default_model_dir(adapter_dir=None)`` run once into an empty cache, its loader spied on."""
    cache = tmp_path_factory.mktemp("cache")
    loaded: list[tuple[Path, Any, Any]] = []
    real_loader = models.load_model_and_tokenizer

    def spy(path: Path, **kwargs: Any) -> Any:
        model, tokenizer = real_loader(path, **kwargs)
        loaded.append((Path(path), model, tokenizer))
        return model, tokenizer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LANGCHAIN_ALIGNER_CACHE", str(cache))
        patch.setattr(models, "load_model_and_tokenizer", spy)
        directory = default_model_dir(adapter_dir=None)
        yield Conversion(cache, directory, list(loaded))


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch, conversion: Conversion) -> None:
    """Any model loading in ``langchain_aligner.models`` fails; the cache is the conversion's."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was loaded again")

    monkeypatch.setenv("LANGCHAIN_ALIGNER_CACHE", str(conversion.cache))
    monkeypatch.setattr(models, "load_model_and_tokenizer", refuse)


def weight(directory: Path, name: str) -> torch.Tensor:
    with safe_open(str(directory / "model.safetensors"), framework="pt") as weights:
        return weights.get_tensor(name)


@pytest.mark.slow
def test_conversion_loads_the_gguf_once_and_writes_the_tgi_layout(conversion: Conversion) -> None:
    assert conversion.directory == conversion.cache / models.DEFAULT_MODEL_NAME
    assert [path.name for path, _, _ in conversion.loaded] == [models.DEFAULT_GGUF_FILE]
    assert TGI_FILES <= {p.name for p in conversion.directory.iterdir()}
    staging = f".{models.DEFAULT_MODEL_NAME}-"
    assert [p.name for p in conversion.cache.iterdir() if p.name.startswith(staging)] == []


@pytest.mark.slow
def test_a_second_call_does_not_reconvert(conversion: Conversion, no_loading: None) -> None:
    weights = conversion.directory / "model.safetensors"
    before = weights.stat()
    assert default_model_dir(adapter_dir=None) == conversion.directory
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.slow
def test_the_converted_model_generates_like_the_gguf_model(conversion: Conversion) -> None:
    _, gguf_model, gguf_tokenizer = conversion.loaded[0]
    model, tokenizer = load_model_and_tokenizer(conversion.directory)
    assert tokenizer(PROMPT)["input_ids"] == gguf_tokenizer(PROMPT)["input_ids"]
    assert tokenizer.eos_token == gguf_tokenizer.eos_token
    assert greedy_ids(model, tokenizer) == greedy_ids(gguf_model, gguf_tokenizer)


@pytest.mark.slow
def test_an_adapter_is_merged_once_into_its_own_directory(
    conversion: Conversion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANGCHAIN_ALIGNER_CACHE", str(conversion.cache))
    adapter = save_random_adapter(conversion.directory, tmp_path / "adapter", seed=1)
    base_inode = (conversion.directory / "model.safetensors").stat().st_ino

    merged_dir = default_model_dir(adapter_dir=adapter)

    assert merged_dir.parent == conversion.cache and merged_dir != conversion.directory
    assert is_exported_model(merged_dir)
    assert (conversion.directory / "model.safetensors").stat().st_ino == base_inode  # the base is kept
    name = "model.layers.0.self_attn.q_proj.weight"
    from peft import PeftModel

    base, _ = load_model_and_tokenizer(conversion.directory)
    reference = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    assert not torch.equal(weight(merged_dir, name), weight(conversion.directory, name))
    assert torch.allclose(weight(merged_dir, name), reference.state_dict()[name], atol=1e-6)

    other = default_model_dir(
        adapter_dir=save_random_adapter(conversion.directory, tmp_path / "other", seed=2)
    )
    assert other not in (merged_dir, conversion.directory)
    monkeypatch.setattr(models, "load_model_and_tokenizer", lambda *a, **k: pytest.fail("merged again"))
    assert default_model_dir(adapter_dir=adapter) == merged_dir
