"""The deprecation warnings DeepSpeed's ZeRO collectives set off on every optimizer step are silenced: a real
ZeRO-3 run prints none of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.training import read_log, run_sft, write_qac


@pytest.mark.slow
def test_zero3_steps_emit_no_deprecation_warnings(tiny_llama_dir: Path, tmp_path: Path) -> None:
    data, output = write_qac(tmp_path / "qac.jsonl"), tmp_path / "run"
    # ZeRO-3 reduce-scatters each micro-batch's gradients: 3 steps x 2 micro-batches of collectives.
    settings = ("deepspeed=ds_zero3.json", "max_steps=3", "gradient_accumulation_steps=2", "eval_share=0")
    result = run_sft(tiny_llama_dir, data, output, *settings, ranks=1)
    assert [line["step"] for line in read_log(output)] == [1, 2, 3]
    assert "FutureWarning" not in result.stderr and "is deprecated" not in result.stderr, result.stderr[
        -3000:
    ]
