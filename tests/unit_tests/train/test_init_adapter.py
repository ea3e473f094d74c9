"""``lora.init_from``: a second training stage starts from a saved adapter's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import get_peft_model_state_dict
from safetensors.torch import load_file

from langchain_aligner.models import load_model_and_tokenizer
from langchain_aligner.testing import save_random_adapter
from langchain_aligner_train.builders import DataSource
from langchain_aligner_train.config import ConfigError, LoRAConfig, SFTConfig
from langchain_aligner_train.dpo import DPOConfig
from langchain_aligner_train.sft import apply_lora, check_init_adapter

DATA = [DataSource(kind="jsonl", path="qac.jsonl")]


def lora(init_from: Path | str | None, r: int = 4) -> LoRAConfig:
    return LoRAConfig(
        r=r, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"], init_from=init_from and str(init_from)
    )


@pytest.fixture(scope="module")
def saved_adapter(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_adapter(tiny_llama_dir, tmp_path_factory.mktemp("stage1"), r=4, alpha=8, seed=3)


def test_the_adapter_starts_from_the_saved_weights(tiny_llama_dir: Path, saved_adapter: Path) -> None:
    saved = load_file(saved_adapter / "adapter_model.safetensors")
    model, _ = load_model_and_tokenizer(tiny_llama_dir)
    started = get_peft_model_state_dict(apply_lora(model, SFTConfig(data=DATA, lora=lora(saved_adapter))))
    assert started.keys() == saved.keys()
    assert all(torch.equal(started[key], saved[key]) for key in saved)

    fresh_model, _ = load_model_and_tokenizer(tiny_llama_dir)
    fresh = get_peft_model_state_dict(apply_lora(fresh_model, SFTConfig(data=DATA, lora=lora(None))))
    assert not all(torch.equal(fresh[key], saved[key]) for key in saved)


def test_a_saved_adapter_of_another_shape_is_refused(tiny_llama_dir: Path, saved_adapter: Path) -> None:
    model, _ = load_model_and_tokenizer(tiny_llama_dir)
    with pytest.raises(ConfigError, match=r"lora.init_from: .* has r=4.*this run's lora has r=8"):
        apply_lora(model, SFTConfig(data=DATA, lora=lora(saved_adapter, r=8)))


def test_a_missing_adapter_fails_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^lora.init_from: not a LoRA adapter directory"):
        check_init_adapter(SFTConfig(data=DATA, lora=lora(tmp_path)))
    check_init_adapter(SFTConfig(data=DATA, lora=lora(None)))


def test_dpo_refuses_init_from(saved_adapter: Path) -> None:
    with pytest.raises(ConfigError, match="lora.init_from is for SFT only"):
        DPOConfig(model="model", data="pairs.jsonl", lora=lora(saved_adapter))
