"""``task=upstream``: the shipped upstream config reads the bootstrap example's Q-A-C file."""

from __future__ import annotations

import pytest

from langchain_aligner_train.builders import DataSource
from langchain_aligner_train.config import CONFIG_DIR, SFTConfig, load_config

pytestmark = pytest.mark.slow


def test_shipped_upstream_config_reads_the_bootstrap_qac_file() -> None:
    config = load_config(SFTConfig, CONFIG_DIR / "sft-upstream.yaml")
    assert config.task == "upstream" and config.identity_warmup_share == 0.0
    assert config.data == [DataSource(kind="jsonl", path="runs/bootstrap/03_data/qac.jsonl")]
