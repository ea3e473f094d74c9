"""Resuming: a two-rank ZeRO-2 LoRA run with dropout, killed after a checkpoint and resumed, ends like an
uninterrupted run (same data order, losses and final weights: the resumed ranks draw the same dropout
masks)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers.training import (
    checkpoint_complete,
    halting,
    launcher_command,
    read_log,
    run_sft,
    write_qac,
)

OVERRIDES = (
    "deepspeed=ds_zero2.json",
    "eval_share=0",
    "save_steps=3",
    "save_total_limit=null",
    "lora.r=8",
    "lora.dropout=0.2",  # dropout draws from the RNG, whose state a resumed run must restore
)


def kill_after_first_checkpoint(model_dir: Path, data: Path, output: Path) -> None:
    """Start the run with ranks that halt after checkpoint ``step-3`` (:func:`.training.halting`), then
    SIGKILL all its processes there: the run is really interrupted, at a known step."""
    command, env = halting(*launcher_command(model_dir, data, output, *OVERRIDES), step=3)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    checkpoints = output / "checkpoints"
    try:
        while process.poll() is None and not checkpoint_complete(checkpoints, "step-3"):
            time.sleep(0.01)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it was killed"
    assert checkpoint_complete(checkpoints, "step-3")
    assert (
        sorted(p.name for p in checkpoints.glob("step-*")) == ["step-3"] and not (output / "model").exists()
    )


@pytest.mark.slow
def test_killed_and_resumed_run_matches_uninterrupted_run(tiny_llama_dir: Path, tmp_path: Path) -> None:
    data = write_qac(tmp_path / "qac.jsonl")
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run_sft(tiny_llama_dir, data, reference, *OVERRIDES)
    kill_after_first_checkpoint(tiny_llama_dir, data, interrupted)
    before = len(read_log(interrupted))
    run_sft(tiny_llama_dir, data, interrupted, *OVERRIDES, "--resume")

    expected = {line["step"]: line for line in read_log(reference)}
    lines = read_log(interrupted)
    resumed = lines[before:]
    assert resumed[0]["step"] == 4, "training continues after the checkpoint, not from the start"
    got = {line["step"]: line for line in lines}  # the resumed run's line wins for a step run twice
    assert sorted(got) == sorted(expected) == list(range(1, 11))
    for step, line in expected.items():
        assert got[step]["records"] == line["records"], f"data order differs at step {step}"
        assert got[step]["loss"] == pytest.approx(line["loss"], rel=1e-3), f"loss differs at step {step}"
        assert got[step]["lr"] == pytest.approx(line["lr"], rel=1e-9)

    final, resumed_weights = (load_file(d / "model" / "model.safetensors") for d in (reference, interrupted))
    assert final.keys() == resumed_weights.keys()
    assert all(torch.allclose(final[k], resumed_weights[k], atol=1e-4) for k in final)
    assert (interrupted / "checkpoints" / "latest").read_text().strip() == "step-10"
