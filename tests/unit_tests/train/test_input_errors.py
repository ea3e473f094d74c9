"""Bad input to a training run is one line naming the file and line or the key, reported before any heavy
work (model path and DeepSpeed config before the data; every data spec before any data is read)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_aligner.records import RecordError, read_records
from langchain_aligner_train.builders import build_dataset
from langchain_aligner_train.config import ConfigError, SFTConfig, check_model_and_deepspeed, load_config
from langchain_aligner_train.dpo import load_preference_dataset

LATIN1 = "Caf\u00e9 au lait?".encode("latin-1")  # b"Caf\xe9 ...": not UTF-8


def test_a_jsonl_line_that_is_not_utf8_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "qac.jsonl"
    good = json.dumps({"question": "q", "answer": "a", "correction": "c"}).encode()
    path.write_bytes(good + b"\n" + b'{"question": "' + LATIN1 + b'", "answer": "a", "correction": "c"}\n')
    with pytest.raises(
        RecordError, match=r"^.*qac\.jsonl:2: not UTF-8 text: byte 0xe9 \(invalid continuation"
    ):
        read_records(path)
    assert len(read_records(path, on_error="skip")) == 1


def test_a_json_file_that_is_not_utf8_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "qac.json"
    path.write_bytes(b'[\n {"question": "q",\n  "answer": "' + LATIN1 + b'", "correction": "c"}]')
    with pytest.raises(RecordError, match=r"qac\.json: line 3: not UTF-8 text: byte 0xe9"):
        read_records(path)


def test_preference_data_that_is_not_utf8_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "preference.jsonl"
    path.write_bytes(b'{"prompt": "p", "chosen": "c", "rejected": "' + LATIN1 + b'"}\n')
    with pytest.raises(RecordError, match=r"preference\.jsonl:1: not UTF-8 text"):
        load_preference_dataset(tmp_path)


def test_a_config_file_that_is_not_utf8_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"num_epochs: 1\ntemplate: " + LATIN1 + b"\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:2: not UTF-8 text"):
        load_config(SFTConfig, path)


def test_every_data_spec_is_checked_before_any_data_is_read(tmp_path: Path) -> None:
    specs = [{"kind": "jsonl", "path": str(tmp_path / "absent.jsonl")}, {"kind": "csv", "path": "qac.csv"}]
    with pytest.raises(ConfigError) as raised:
        build_dataset(specs)
    assert str(raised.value).startswith("data[1].kind: Input should be 'jsonl', 'json', 'parquet'")
    assert str(raised.value).endswith("(got 'csv')") and "\n" not in str(raised.value)
    with pytest.raises(ConfigError, match=r"^data\[0\]: a jsonl source needs a \.jsonl"):
        build_dataset([{"kind": "jsonl", "path": "qac.csv"}])


def test_model_and_deepspeed_config_are_checked_without_loading(tiny_llama_dir: Path, tmp_path: Path) -> None:
    check_model_and_deepspeed(tiny_llama_dir, "ds_zero3.json")
    check_model_and_deepspeed(None, None)
    with pytest.raises(ConfigError, match=f"^model: not a model directory \\(no config.json\\): {tmp_path}$"):
        check_model_and_deepspeed(tmp_path, None)
    with pytest.raises(ConfigError, match=r"^model: GGUF file not found: .*absent\.gguf$"):
        check_model_and_deepspeed(tmp_path / "absent.gguf", None)
    broken = tmp_path / "ds.json"
    broken.write_text('{\n  "zero_optimization": {"stage": 3},\n  "bf16": {enabled: true}\n}\n')
    with pytest.raises(ConfigError, match=f"^deepspeed config {broken}:3: not valid JSON"):
        check_model_and_deepspeed(tiny_llama_dir, str(broken))
    with pytest.raises(ConfigError, match="^deepspeed config not found: nope.json$"):
        check_model_and_deepspeed(tiny_llama_dir, "nope.json")
