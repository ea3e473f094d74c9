"""``python -m train dpo``: real TRL DPO jobs on a tiny Llama, DeepSpeed ZeRO-3 on 2 CPU ranks and alone."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from langchain_aligner.models import is_exported_model, load_model_and_tokenizer
from train.config import CONFIG_DIR, ConfigError, load_config
from train.dpo import DPOConfig, load_preference_dataset, main, train_dpo
from train.preference import Correction, build_preference_data

TINY_CONFIG = CONFIG_DIR / "dpo-tiny.yaml"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def preference_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight preference pairs: a careful correction chosen over a curt original answer."""
    triples = [
        Correction(f"How do I do task {i}?", f"No {i}.", f"Here are the safe steps for task {i}, one by one.")
        for i in range(8)
    ]
    target = tmp_path_factory.mktemp("preference")
    build_preference_data(triples).write(target)
    return target


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
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
        + ["--module", "train", "dpo", "--config", str(TINY_CONFIG), f"model={tiny_llama_dir}"]
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
        [sys.executable, "-m", "train", "dpo", "--config", str(TINY_CONFIG), f"model={tiny_llama_dir}"]
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
        load_config(DPOConfig, TINY_CONFIG, ["model=m", "data=d", "deepspeed=nope.json"]).deepspeed_file()
    with_deepspeed = load_config(DPOConfig, TINY_CONFIG, ["model=m", "data=d", "deepspeed=ds_zero2.json"])
    assert with_deepspeed.deepspeed_file() == CONFIG_DIR / "ds_zero2.json"
    with pytest.raises(ConfigError, match="needs the DeepSpeed launcher"):
        train_dpo(with_deepspeed)

    with pytest.raises(ValueError, match=r"sft\.jsonl:1: missing field\(s\) \['chosen', 'rejected'\]"):
        load_preference_dataset(preference_dir / "sft.jsonl")
    with pytest.raises(FileNotFoundError, match="preference data not found"):
        load_preference_dataset(tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no preference rows"):
        load_preference_dataset(tmp_path / "empty.jsonl")
