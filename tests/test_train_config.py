"""Training config: YAML/JSON files, key=value overrides, bad keys and values, the paper's defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.config import CONFIG_DIR, ConfigError, LoRAConfig, SFTConfig, config_to_dict, load_config

PAPER = {
    "learning_rate": 2e-5,
    "num_epochs": 3,
    "max_length": 2048,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.03,
    "adam_betas": (0.9, 0.95),
    "weight_decay": 0.0,
}


def test_defaults_are_the_papers() -> None:
    config = SFTConfig()
    assert {k: getattr(config, k) for k in PAPER} == PAPER
    assert config.identity_warmup_share == 0.0
    assert config.lora is None


def test_shipped_aligner_config_has_the_papers_settings() -> None:
    config = load_config(SFTConfig, CONFIG_DIR / "sft-aligner.yaml")
    assert {k: getattr(config, k) for k in PAPER} == PAPER
    assert config.deepspeed_path() == CONFIG_DIR / "ds_zero3.json"


@pytest.mark.parametrize(
    "path", [*sorted(CONFIG_DIR.glob("sft-*.yaml")), CONFIG_DIR / "aligner-tiny.yaml"], ids=str
)
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(SFTConfig, path)
    assert config.deepspeed is None or config.deepspeed_path().is_file()  # type: ignore[union-attr]


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1.0e-4\nper_device_batch_size: 2\nlora: {r: 4}\n")
    config = load_config(
        SFTConfig,
        path,
        [
            "per_device_batch_size=8",
            "lora.alpha=16",
            "adam_betas=[0.9, 0.99]",
            "data=[{kind: jsonl, path: a}]",
        ],
    )
    assert config.learning_rate == 1e-4
    assert config.per_device_batch_size == 8
    assert config.lora == LoRAConfig(r=4, alpha=16)
    assert config.adam_betas == (0.9, 0.99)
    assert config.data == [{"kind": "jsonl", "path": "a"}]


def test_json_file_and_nested_override_creates_lora(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"num_epochs": 1, "deepspeed": None}))
    config = load_config(SFTConfig, path, ["lora.r=8", "max_steps=5"])
    assert config.num_epochs == 1 and config.deepspeed is None and config.max_steps == 5
    assert config.lora is not None and config.lora.r == 8
    assert load_config(SFTConfig, path, ["lora=null"]).lora is None


def test_int_is_accepted_for_a_float_and_round_trips() -> None:
    config = load_config(SFTConfig, None, ["learning_rate=1", "weight_decay=0", "warmup_ratio=5e-2"])
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.warmup_ratio == 0.05
    overrides = [f"{k}={json.dumps(v)}" for k, v in config_to_dict(config).items()]
    assert load_config(SFTConfig, None, overrides) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["learnin_rate=1e-5"], "unknown config key"),
        (["lora.rank=4"], "lora.rank"),
        (["num_epochs=three"], "num_epochs: expected int"),
        (["learning_rate=fast"], "learning_rate: expected float"),
        (["gradient_checkpointing=1"], "expected bool"),
        (["per_device_batch_size=true"], "expected int"),
        (["adam_betas=[0.9]"], "expected 2 items"),
        (["precision=fp8"], "precision"),
        (["identity_warmup_share=1.5"], "identity_warmup_share"),
        (["lora.dropout=2"], "lora.dropout"),
        (["no_equals_sign"], "not key=value"),
        (["data=[1]"], "data[0]: expected a mapping"),
    ],
)
def test_bad_overrides_are_named(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(SFTConfig, None, overrides)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(SFTConfig, tmp_path / "missing.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(SFTConfig, listed)
    with pytest.raises(ConfigError, match="deepspeed config not found"):
        load_config(SFTConfig, None, ["deepspeed=nope.json"]).deepspeed_path()
