"""The deprecation warnings DeepSpeed's ZeRO collectives set off on every optimizer step are silenced, and
only those: the filter names the message, the category and the module."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from langchain_aligner_train.trainer import silence_known_warnings
from tests.helpers.training import read_log, run_sft, write_qac

DEPRECATED = (
    "`torch.distributed.reduce_scatter_tensor` is deprecated. Please use `torch.distributed.{}` instead."
)


def shown(message: str, category: type[Warning], module: str) -> bool:
    """Whether a warning raised with ``message`` and ``category`` from ``module`` gets through the filters."""
    with warnings.catch_warnings(record=True) as caught:
        silence_known_warnings()
        warnings.warn_explicit(message, category, filename=f"{module}.py", lineno=1, module=module)
    return bool(caught)


def test_only_the_collectives_deprecations_from_torch_distributed_are_silenced() -> None:
    assert not shown(
        DEPRECATED.format("reduce_scatter_single"), FutureWarning, "torch.distributed.c10d_logger"
    )
    all_gather = DEPRECATED.replace("reduce_scatter_tensor", "all_gather_into_tensor")
    assert not shown(all_gather, FutureWarning, "torch.distributed.distributed_c10d")
    assert shown(DEPRECATED, FutureWarning, "my_module")  # the same text from elsewhere
    assert shown(DEPRECATED, UserWarning, "torch.distributed.c10d_logger")
    assert shown(
        "`torch.distributed.broadcast` is deprecated.", FutureWarning, "torch.distributed.c10d_logger"
    )


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
