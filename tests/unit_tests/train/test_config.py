"""Training config: one base for SFT and DPO, YAML/JSON files, key=value overrides validated by pydantic, bad
keys and values named, --help listing every key, the paper's defaults."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from langchain_aligner_train import dpo, sft
from langchain_aligner_train.builders import DataSource
from langchain_aligner_train.config import (
    CONFIG_DIR,
    ConfigError,
    LoRAConfig,
    SFTConfig,
    TrainingConfig,
    config_help,
    config_to_dict,
    load_config,
)
from langchain_aligner_train.dpo import DPOConfig

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
            "data=[{kind: jsonl, path: a.jsonl}, {kind: hub, name: x/y, builder: hh_rlhf}]",
        ],
    )
    assert config.learning_rate == 1e-4
    assert config.per_device_batch_size == 8
    assert config.lora == LoRAConfig(r=4, alpha=16)
    assert config.adam_betas == (0.9, 0.99)
    assert config.data == [
        DataSource(kind="jsonl", path="a.jsonl"),
        DataSource(kind="hub", name="x/y", builder="hh_rlhf"),
    ]


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
        (["num_epochs=three"], "num_epochs: Input should be a valid integer (got 'three')"),
        (["learning_rate=fast"], "learning_rate: Input should be a valid number (got 'fast')"),
        (["gradient_checkpointing=1"], "gradient_checkpointing: Input should be a valid boolean (got 1)"),
        (["per_device_batch_size=true"], "per_device_batch_size: Input should be a valid integer (got True)"),
        (["adam_betas=[0.9]"], "adam_betas[1]: Field required"),
        (["precision=fp8"], "precision"),
        (["identity_warmup_share=1.5"], "identity_warmup_share"),
        (["lora.dropout=2"], "lora.dropout"),
        (["no_equals_sign"], "not key=value"),
        (["data=[1]"], "data[0]: Input should be an object (got 1)"),
        (["data=[{kind: csv, path: qac.csv}]"], "data[0].kind: Input should be 'jsonl', 'json', 'parquet'"),
        (["data=[{kind: jsonl, path: qac.csv}]"], "data[0]: a jsonl source needs a .jsonl or .jsonl.gz file"),
        (
            ["data=[{kind: jsonl, path: a.jsonl, limit: '3'}]"],
            "data[0].limit: Input should be a valid integer",
        ),
    ],
)
def test_bad_overrides_are_named(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(SFTConfig, None, overrides)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(SFTConfig, tmp_path / "missing.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(SFTConfig, listed)
    with pytest.raises(ConfigError, match="deepspeed config not found"):
        load_config(SFTConfig, None, ["deepspeed=nope.json"]).deepspeed_path()


def test_a_wrong_type_names_the_key_the_expected_type_and_the_value(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("lora: {r: 8, alpha: sixteen}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(SFTConfig, path)
    assert str(raised.value) == "lora.alpha: Input should be a valid integer (got 'sixteen')"


def test_an_exponent_without_a_dot_is_a_float(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 2e-5\nwarmup_ratio: 5E-2\n")  # YAML 1.1 would read strings
    config = load_config(SFTConfig, path, ["weight_decay=1e-2"])
    assert (config.learning_rate, config.warmup_ratio, config.weight_decay) == (2e-5, 0.05, 0.01)


def test_sft_and_dpo_share_one_base_config() -> None:
    shared = {key.name for key in dataclasses.fields(TrainingConfig)}
    for config in (SFTConfig, DPOConfig):
        assert issubclass(config, TrainingConfig)
        assert shared <= {key.name for key in dataclasses.fields(config)}
    assert {"resume", "lora", "deepspeed", "learning_rate", "seed"} <= shared
    assert (TrainingConfig().learning_rate, SFTConfig().learning_rate) == (2e-5, 2e-5)
    assert DPOConfig(model="m", data="d").learning_rate == 5e-7  # its own default, the same field
    help_of = {
        cls: {key.name: key.metadata for key in dataclasses.fields(cls)} for cls in (SFTConfig, DPOConfig)
    }
    assert help_of[SFTConfig]["learning_rate"] == help_of[DPOConfig]["learning_rate"]


@pytest.mark.parametrize(("module", "config"), [(sft, SFTConfig), (dpo, DPOConfig)], ids=["sft", "dpo"])
def test_help_lists_every_key_with_its_meaning_and_default(
    module: object, config: type, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        module.main(["--help"])  # type: ignore[attr-defined]
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert config_help(config) in out
    keys = [("", key) for key in dataclasses.fields(config)]
    keys += [("lora.", key) for key in dataclasses.fields(LoRAConfig)]
    words = " ".join(out.split())  # wrapped lines joined again
    for prefix, key in keys:
        default = key.default_factory() if key.default_factory is not dataclasses.MISSING else key.default
        expected = f"{prefix}{key.name} [{json.dumps(default)}]: {key.metadata['help']}"
        if "choices" in key.metadata:
            expected += f" (one of: {', '.join(key.metadata['choices'])})"
        assert " ".join(expected.split()) in words, key.name
    assert 'precision ["bf16"]' in words and "(one of: bf16, fp16, fp32" in words
