"""``langchain-aligner train dpo``: real TRL DPO jobs on a tiny Llama, DeepSpeed ZeRO-3 on 2 CPU ranks and
alone; the README's command as written; a killed and resumed run ends as an uninterrupted one."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from langchain_aligner.models import is_exported_model, load_model_and_tokenizer
from langchain_aligner.testing import cli_command
from langchain_aligner_train.cli import PACKAGE
from langchain_aligner_train.config import CONFIG_DIR, load_config
from langchain_aligner_train.dpo import DPOConfig, last_checkpoint, load_preference_dataset
from tests.helpers.paths import REPOSITORY
from tests.helpers.training import halting

TINY_CONFIG = CONFIG_DIR / "dpo-tiny.yaml"


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def logged(output_dir: Path, key: str) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry[key] for entry in history if key in entry]


def preference_gap(model: Any, tokenizer: Any, row: dict[str, Any]) -> float:
    """log p(chosen | prompt) - log p(rejected | prompt), summed over the answer tokens."""

    def logp(answer: list[dict[str, str]]) -> float:
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(row["prompt"] + answer, tokenize=False)
        start = len(tokenizer(prompt)["input_ids"])
        ids = torch.tensor([tokenizer(full)["input_ids"]])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].log_softmax(-1)
        targets = ids[0, 1:]
        return float(logits[start - 1 :].gather(1, targets[start - 1 :, None]).sum())

    return logp(row["chosen"]) - logp(row["rejected"])


@pytest.mark.slow
def test_dpo_with_two_deepspeed_zero3_ranks(
    tiny_llama_dir: Path, preference_dir: Path, tmp_path: Path
) -> None:
    output_dir = tmp_path / "run"
    deepspeed = Path(sys.executable).parent / "deepspeed"
    run(
        [str(deepspeed), "--master_port", str(free_port()), "--num_gpus", "2", "--no_local_rank"]
        + ["--module", PACKAGE, "dpo", "--config", str(TINY_CONFIG), f"model={tiny_llama_dir}"]
        + [f"data={preference_dir}", f"output_dir={output_dir}", "deepspeed=ds_zero3.json", "max_steps=4"]
    )

    margins, losses = logged(output_dir, "rewards/margins"), logged(output_dir, "loss")
    assert len(margins) == 4
    assert margins[0] == pytest.approx(0.0, abs=1e-4)  # before the first update, policy == reference
    assert margins[-1] > margins[0] and margins[-1] > 0
    assert losses[-1] < losses[0]

    export = output_dir / "model"
    assert is_exported_model(export)
    trained, tokenizer = load_model_and_tokenizer(export)
    original, _ = load_model_and_tokenizer(tiny_llama_dir)
    assert tokenizer.chat_template == load_config(DPOConfig, TINY_CONFIG, ["model=m", "data=d"]).chat_template
    rows = load_preference_dataset(preference_dir)
    gaps = [
        (preference_gap(trained, tokenizer, row), preference_gap(original, tokenizer, row)) for row in rows
    ]
    assert all(after > before for after, before in gaps), gaps  # the exported model prefers the corrections
    prompt = tokenizer.apply_chat_template(rows[0]["prompt"], add_generation_prompt=True, return_tensors="pt")
    ids = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
    generated = trained.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert generated.shape[1] == ids.shape[1] + 4


@pytest.mark.slow
def test_dpo_single_process_with_lora_merges_the_adapter(
    tiny_llama_dir: Path, preference_dir: Path, tmp_path: Path
) -> None:
    output_dir = tmp_path / "run"
    lora = "lora={r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}"
    result = run(
        cli_command("train", "dpo", "--config", str(TINY_CONFIG), f"model={tiny_llama_dir}")
        + [f"data={preference_dir}/preference.jsonl", f"output_dir={output_dir}", "max_steps=3", lora]
        + [f"export_dir={tmp_path / 'export'}", "learning_rate=1e-2", "precision=bf16"]
    )

    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["export_dir"] == str(tmp_path / "export") and summary["rewards/margins"] > 0
    assert (output_dir / "final" / "adapter_config.json").is_file()
    assert is_exported_model(tmp_path / "export")
    assert not (tmp_path / "export" / "adapter_config.json").exists()
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["dtype"] == "bfloat16"  # exported in the training precision
    trained, _ = load_model_and_tokenizer(tmp_path / "export", dtype="bfloat16")
    original, _ = load_model_and_tokenizer(tiny_llama_dir, dtype="bfloat16")
    weights, base = trained.state_dict(), original.state_dict()
    assert set(weights) == set(base)  # a plain model: the adapter is merged in
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(weights[name], base[name])
    assert torch.equal(
        weights["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"]
    )


@pytest.fixture(scope="module")
def chat_llama_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with a chat template in its tokenizer, as an upstream (chat) model has."""
    from transformers import AutoTokenizer

    target = tmp_path_factory.mktemp("chat-llama")
    shutil.copytree(tiny_llama_dir, target, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(target)
    tokenizer.chat_template = load_config(DPOConfig, TINY_CONFIG, ["model=m", "data=d"]).chat_template
    tokenizer.save_pretrained(target)
    return target


@pytest.mark.slow
def test_the_readme_dpo_command_runs_as_written(
    chat_llama_dir: Path, preference_dir: Path, tmp_path: Path
) -> None:
    readme = " ".join((REPOSITORY / "README.md").read_text().split())
    written = re.search(r"`langchain-aligner train dpo (--config \S+) model=\S+ data=\S+`", readme)
    assert written is not None, "the README's DPO command"
    config = written.group(1).split()  # --config train/configs/dpo-upstream.yaml: ZeRO-3, bf16, no launcher
    output_dir = tmp_path / "run"
    command = cli_command("train", "dpo", *config)
    command += [f"model={chat_llama_dir}", f"data={preference_dir}", f"output_dir={output_dir}"]
    if not torch.cuda.is_available():
        assert "on a machine without a GPU add `precision=fp32`" in readme
        refused = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=600)
        assert refused.returncode == 2 and refused.stderr.splitlines() == [
            "langchain-aligner train dpo: error: precision=bf16 with deepspeed=ds_zero3.json needs a GPU "
            "(transformers trains bf16 on a CPU only without DeepSpeed): set precision=fp32 or deepspeed=null"
        ]
        command.append("precision=fp32")
    result = run(command)
    assert json.loads(result.stdout.strip().splitlines()[-1])["export_dir"] == str(output_dir / "model")
    assert is_exported_model(output_dir / "model") and logged(output_dir, "train_loss")  # one step, no "loss"


DPO_RESUME = (
    "deepspeed=ds_zero2.json",  # a world of one without the launcher
    "lora={r: 4, alpha: 8, dropout: 0.2, target_modules: [q_proj, v_proj]}",  # dropout draws from the RNG
    "learning_rate=1e-2",
    "save_steps=3",
    "save_total_limit=null",
)


def dpo_command(module: list[str], model: Path, data: Path, output_dir: Path) -> list[str]:
    settings = [f"model={model}", f"data={data}", f"output_dir={output_dir}", *DPO_RESUME]
    return [sys.executable, "-m", *module, "dpo", "--config", str(TINY_CONFIG), *settings]


@pytest.mark.slow
def test_killed_and_resumed_dpo_run_matches_uninterrupted_run(
    tiny_llama_dir: Path, preference_dir: Path, tmp_path: Path
) -> None:
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run(dpo_command([PACKAGE], tiny_llama_dir, preference_dir, reference))
    # Ranks that halt after checkpoint 3, killed there: really interrupted.
    command, env = halting(
        dpo_command([PACKAGE], tiny_llama_dir, preference_dir, interrupted), os.environ, step=3
    )
    process = subprocess.Popen(
        command, cwd=REPOSITORY, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while process.poll() is None and last_checkpoint(interrupted) is None:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it was killed"
    assert last_checkpoint(interrupted) == interrupted / "checkpoint-3"
    assert not (interrupted / "final").exists() and not (interrupted / "model").exists()
    run([*dpo_command([PACKAGE], tiny_llama_dir, preference_dir, interrupted), "--resume"])

    steps = {}
    for output_dir in (reference, interrupted):
        history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
        steps[output_dir] = {entry["step"]: entry for entry in history if "loss" in entry}
    assert sorted(steps[reference]) == sorted(steps[interrupted]) == list(range(1, 9))
    for step, entry in steps[reference].items():
        for key in ("loss", "rewards/margins", "learning_rate"):
            assert steps[interrupted][step][key] == pytest.approx(entry[key], rel=1e-3, abs=1e-6), (step, key)
    final, resumed = (load_file(d / "model" / "model.safetensors") for d in (reference, interrupted))
    assert final.keys() == resumed.keys()
    assert all(torch.allclose(final[k], resumed[k], atol=1e-4) for k in final)
