"""``langchain-aligner train sft task=upstream``: a real single-process run (DeepSpeed ZeRO-2, no launcher)
that fine-tunes the tiny Llama on corrections framed by a chat template; the loss falls, the export
generates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from langchain_aligner import GenerationParams
from langchain_aligner.backends import TransformersBackend
from tests.helpers.training import launcher_command, read_log, run_sft, write_qac

pytestmark = pytest.mark.slow

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_upstream_sft_trains_and_exports(tiny_llama_dir: Path, tmp_path: Path) -> None:
    data = write_qac(tmp_path / "qac.jsonl", count=24)
    output = tmp_path / "upstream"
    overrides = [
        "task=upstream",
        f"chat_template={json.dumps(CHAT_TEMPLATE)}",
        "identity_warmup_share=0",
        "eval_share=0",
        "deepspeed=ds_zero2.json",
    ]
    run_sft(tiny_llama_dir, data, output, *overrides, ranks=1)
    log = read_log(output)
    assert len(log) >= 4 and {line["phase"] for line in log} == {"main"}
    assert log[-1]["loss"] < 0.8 * log[0]["loss"], [line["loss"] for line in log]
    assert json.loads((output / "config.json").read_text())["task"] == "upstream"

    tokenizer = AutoTokenizer.from_pretrained(output / "model")
    assert tokenizer.chat_template == CHAT_TEMPLATE  # saved with the export, for chat servers
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Tell me about tea."}], tokenize=False, add_generation_prompt=True
    )
    generation = TransformersBackend(output / "model").generate(
        str(prompt), GenerationParams(max_new_tokens=8)
    )
    assert generation.completion_tokens


def test_export_checkpoint_writes_the_last_checkpoint_as_the_run_would(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    """``--export-checkpoint`` exports a run's last checkpoint without training further: here the end of a
    finished run, so the re-export must equal the run's own export."""
    import subprocess

    import torch
    from safetensors.torch import load_file

    data = write_qac(tmp_path / "qac.jsonl", count=16)
    output = tmp_path / "run"
    overrides = ["eval_share=0", "deepspeed=ds_zero2.json", "lora={r: 4, alpha: 8, dropout: 0.0}"]
    command, env = launcher_command(tiny_llama_dir, data, output, *overrides, ranks=1)
    empty = subprocess.run([*command, "--export-checkpoint"], capture_output=True, text=True, env=env)
    assert empty.returncode != 0 and "no checkpoint to export" in empty.stderr
    run_sft(tiny_llama_dir, data, output, *overrides, ranks=1)
    log = (output / "loss_log.jsonl").read_text()
    trained = load_file(output / "adapter" / "adapter_model.safetensors")
    (output / "adapter" / "adapter_model.safetensors").unlink()
    result = subprocess.run([*command, "--export-checkpoint"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exported the step-" in result.stderr
    exported = load_file(output / "adapter" / "adapter_model.safetensors")
    assert exported.keys() == trained.keys()
    for name, tensor in exported.items():
        assert torch.equal(tensor, trained[name]), name
    assert (output / "loss_log.jsonl").read_text() == log  # no step was trained again
