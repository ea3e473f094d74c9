"""Bad input to a real ``langchain-aligner train`` process is one line naming the file and line or the key,
before any heavy work; under the DeepSpeed launcher, from rank 0 only."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from langchain_aligner.testing import cli_command
from langchain_aligner_train.config import CONFIG_DIR
from tests.helpers.paths import REPOSITORY
from tests.helpers.training import launcher_command, write_qac


def run_train(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command("train", *args), cwd=REPOSITORY, capture_output=True, text=True, timeout=900
    )


@pytest.mark.parametrize("case", ["model", "deepspeed", "data_kind"])
def test_bad_input_is_one_line_before_any_data_is_read(
    case: str, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "ds.json"
    broken.write_text("{not json}\n")
    absent_data = f"data=[{{kind: jsonl, path: '{tmp_path / 'absent.jsonl'}'}}]"  # an error if it were read
    settings = {
        "model": [f"model={tmp_path / 'no-model'}", absent_data],
        "deepspeed": [f"model={tiny_llama_dir}", f"deepspeed={broken}", absent_data],
        "data_kind": [f"model={tiny_llama_dir}", absent_data[:-1] + ", {kind: csv, path: qac.csv}]"],
    }[case]
    output = tmp_path / "run"
    result = run_train(
        "sft", "--config", str(CONFIG_DIR / "sft-tiny.yaml"), f"output_dir={output}", *settings
    )
    expected = {
        "model": f"model: not a model directory (no config.json): {tmp_path / 'no-model'}",
        "deepspeed": f"deepspeed config {broken}:1: not valid JSON: Expecting property name enclosed in",
        "data_kind": "data[1].kind: Input should be 'jsonl', 'json', 'parquet'",
    }[case]
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"langchain-aligner train sft: error: {expected}")
    assert not output.exists()  # checked before the run directory is even taken


@pytest.mark.slow
def test_a_bad_record_under_the_launcher_is_one_line_from_rank_0(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    data = write_qac(tmp_path / "qac.jsonl", count=6)
    lines = data.read_text().splitlines()
    lines[3] = json.dumps({"question": "q", "answer": "a"})
    data.write_text("\n".join(lines) + "\n")
    command, env = launcher_command(tiny_llama_dir, data, tmp_path / "run")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    errors = [line for line in output.splitlines() if "error:" in line]
    expected = f"langchain-aligner train sft: error: {data}:4: missing field(s) ['correction']"
    assert errors == [expected], output[-3000:]
    assert "Traceback" not in output and "[rank" not in output
