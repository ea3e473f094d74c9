"""The warning filter for DeepSpeed's ZeRO collectives silences only those: it names the message, the category
and the module."""

from __future__ import annotations

import warnings

from langchain_aligner_train.trainer import silence_known_warnings

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
