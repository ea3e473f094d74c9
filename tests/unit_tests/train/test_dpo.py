"""``langchain-aligner train dpo``: bad configs and preference data are refused before any training."""

from __future__ import annotations

from pathlib import Path

import pytest

from langchain_aligner_train.config import CONFIG_DIR, ConfigError, load_config
from langchain_aligner_train.dpo import DPOConfig, load_preference_dataset, main

TINY_CONFIG = CONFIG_DIR / "dpo-tiny.yaml"


def test_bad_configs_and_data_are_refused(
    preference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(TINY_CONFIG), f"data={preference_dir}"])
    assert exit_info.value.code == 2
    assert "model is required" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="precision"):
        load_config(DPOConfig, TINY_CONFIG, ["model=m", "data=d", "precision=fp8"])
    with pytest.raises(ConfigError, match="deepspeed config not found"):
        load_config(DPOConfig, TINY_CONFIG, ["model=m", "data=d", "deepspeed=nope.json"]).deepspeed_path()
    with_deepspeed = load_config(DPOConfig, TINY_CONFIG, ["model=m", "data=d", "deepspeed=ds_zero2.json"])
    assert with_deepspeed.deepspeed_path() == CONFIG_DIR / "ds_zero2.json"

    with pytest.raises(ValueError, match=r"sft\.jsonl:1: missing field\(s\) \['chosen', 'rejected'\]"):
        load_preference_dataset(preference_dir / "sft.jsonl")
    with pytest.raises(FileNotFoundError, match="preference data not found"):
        load_preference_dataset(tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no preference rows"):
        load_preference_dataset(tmp_path / "empty.jsonl")
