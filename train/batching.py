"""Batching: a deterministic, distributed, length-grouped training plan and a padding collator.

The whole run is planned up front from the record lengths and the seed, so every rank knows every other
rank's batches (the loss is normalised by the token count of the global batch without communication) and a
resumed run skips the steps it already took and sees exactly the same data order.

Length grouping follows the "mega-batch" scheme of HF's ``LengthGroupedSampler``: shuffle, cut the
permutation into mega-batches of ``mega_batch_factor`` global batches, sort each by length and cut it into
global batches; the order of the batches is then shuffled too. Records in one batch have similar lengths,
so padding to the batch maximum wastes little while the data order stays random.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .tokenization import IGNORE_INDEX

__all__ = [
    "IGNORE_INDEX",
    "Phase",
    "PlannedStep",
    "plan_epoch",
    "plan_training",
    "pad_collate",
]


@dataclass(frozen=True)
class Phase:
    """A stretch of training over a subset of the dataset: e.g. the identity warm-up, then the main data."""

    name: str
    indices: Sequence[int]
    epochs: int


@dataclass(frozen=True)
class PlannedStep:
    """One optimizer step: ``micro_batches[m][r]``: record indices of micro-batch ``m`` on rank ``r``."""

    phase: str
    epoch: int
    micro_batches: list[list[list[int]]]

    def for_rank(self, rank: int) -> list[list[int]]:
        """The micro-batches this rank trains on in this step."""
        return [per_rank[rank] for per_rank in self.micro_batches]

    def indices(self) -> list[int]:
        """Every record index in the step, all ranks."""
        return [i for per_rank in self.micro_batches for batch in per_rank for i in batch]


def plan_epoch(
    indices: Sequence[int],
    lengths: Sequence[int],
    *,
    batch_size: int,
    world_size: int,
    seed: int,
    epoch: int,
    group_by_length: bool = True,
    mega_batch_factor: int = 50,
) -> list[list[list[int]]]:
    """Global micro-batches of one epoch: each a list of ``world_size`` per-rank batches of ``batch_size``.

    The last global batch is filled up with records from the start of the permutation (as
    ``DistributedSampler`` does), so every rank always gets a full batch.
    """
    if not indices:
        return []
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
    global_size = batch_size * world_size
    shortfall = -len(order) % global_size
    order += (order * (shortfall // len(order) + 1))[:shortfall]
    if group_by_length:
        mega = global_size * mega_batch_factor
        order = [
            i
            for start in range(0, len(order), mega)
            for i in sorted(order[start : start + mega], key=lambda i: -lengths[i])
        ]
    batches = [order[start : start + global_size] for start in range(0, len(order), global_size)]
    if group_by_length:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return [[batch[r * batch_size : (r + 1) * batch_size] for r in range(world_size)] for batch in batches]


def plan_training(
    phases: Sequence[Phase],
    lengths: Sequence[int],
    *,
    batch_size: int,
    world_size: int,
    gradient_accumulation_steps: int,
    seed: int,
    group_by_length: bool = True,
    max_steps: int | None = None,
) -> list[PlannedStep]:
    """Every optimizer step of the run, phase after phase (e.g. identity warm-up first), epoch after epoch.

    Epochs are numbered from 0 across the phases, empty phases left out.

    An epoch's last step may hold fewer than ``gradient_accumulation_steps`` micro-batches.
    ``max_steps`` cuts the plan short.
    """
    steps: list[PlannedStep] = []
    epoch = 0
    for phase in (p for p in phases if p.indices):
        for _ in range(phase.epochs):
            micro = plan_epoch(
                phase.indices,
                lengths,
                batch_size=batch_size,
                world_size=world_size,
                seed=seed,
                epoch=epoch,
                group_by_length=group_by_length,
            )
            gas = gradient_accumulation_steps
            steps += [PlannedStep(phase.name, epoch, micro[s : s + gas]) for s in range(0, len(micro), gas)]
            epoch += 1
    return steps[:max_steps] if max_steps is not None else steps


def pad_collate(
    records: Sequence[Mapping[str, Any]], pad_token_id: int, pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """Right-pad ``input_ids``/``attention_mask``/``labels`` to the longest record of the batch, rounded up to
    ``pad_to_multiple_of`` when given (few distinct shapes: on CPUs oneDNN compiles and caches kernels per
    shape, so every new batch width costs time and memory that is never given back). ``records`` are
    :class:`~.tokenization.EncodedRecord` s, e.g. rows of :func:`~.tokenization.encode_records`' dataset."""
    width = max(len(r["input_ids"]) for r in records)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of

    def column(key: str, fill: int) -> torch.Tensor:
        return torch.tensor(
            [list(r[key]) + [fill] * (width - len(r[key])) for r in records], dtype=torch.long
        )

    return {
        "input_ids": column("input_ids", pad_token_id),
        "attention_mask": column("attention_mask", 0),
        "labels": column("labels", IGNORE_INDEX),
    }
