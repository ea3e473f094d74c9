"""Real DeepSpeed jobs on a tiny Llama: ``deepspeed --num_gpus 2 --module langchain_aligner_train sft`` with
ZeRO-3 on two CPU ranks, and a single-process ZeRO-2 LoRA run; the loss falls and the export loads in the
serving backend. (Two ZeRO-2 ranks run in test_resume.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_aligner import GenerationParams
from langchain_aligner.backends import TransformersBackend
from langchain_aligner_train.trainer import LOSS_LOG
from tests.helpers.training import read_log, run_sft, write_qac

pytestmark = pytest.mark.slow


def assert_trained_and_served(output: Path, fall: float = 0.8) -> list[dict]:
    """The loss fell to ``fall`` times its first value or less, the log is complete, the export generates."""
    log = read_log(output)
    assert len(log) >= 4
    assert [line["step"] for line in log] == list(range(1, len(log) + 1))
    assert log[-1]["loss"] < fall * log[0]["loss"], [line["loss"] for line in log]
    assert all(0.0 <= line["padding_share"] < 1.0 and line["tokens_per_s"] > 0 for line in log)
    assert {line["phase"] for line in log} == {"warmup", "main"}
    backend = TransformersBackend(output / "model")
    generation = backend.generate(
        "BEGINNING OF CONVERSATION: USER: hi ASSISTANT:", GenerationParams(max_new_tokens=8)
    )
    assert generation.text and generation.completion_tokens  # a random model may well write spaces
    return log


@pytest.fixture(scope="module")
def qac_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_qac(tmp_path_factory.mktemp("data") / "qac.jsonl")


def test_two_rank_zero3(tiny_llama_dir: Path, qac_file: Path, tmp_path: Path) -> None:
    output = tmp_path / "zero3"
    run_sft(tiny_llama_dir, qac_file, output)
    log = assert_trained_and_served(output)
    # Every record index of the plan is trained in the warm-up phase or the main phase; none is lost.
    assert set().union(*(line["records"] for line in log)) == set(range(36))
    evals = [json.loads(line) for line in (output / LOSS_LOG).read_text().splitlines() if "eval_loss" in line]
    assert len(evals) == 3 and evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert len(list((output / "checkpoints").glob("step-*"))) == 2  # save_total_limit


def test_single_process_lora_writes_adapter_and_merged_model(
    tiny_llama_dir: Path, qac_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "lora"
    overrides = ["lora.r=8", "learning_rate=3e-2", "eval_share=0", "deepspeed=ds_zero2.json"]
    run_sft(tiny_llama_dir, qac_file, output, *overrides, ranks=1)
    # LoRA on a random model with a frozen output layer moves the loss less than full fine-tuning.
    assert_trained_and_served(output, fall=0.97)
    assert (output / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((output / "adapter" / "adapter_config.json").read_text())["r"] == 8


def test_bad_override_fails_clearly(tiny_llama_dir: Path, qac_file: Path, tmp_path: Path) -> None:
    result = run_sft(tiny_llama_dir, qac_file, tmp_path, "learnin_rate=1", ranks=1, check=False)
    assert result.returncode != 0
    assert "unknown config key(s) ['learnin_rate']" in result.stderr
