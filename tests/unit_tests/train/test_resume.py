"""Resuming keeps the data order: the training plan is fixed by the seed and trains every record each
epoch."""

from __future__ import annotations

import torch

from langchain_aligner_train.batching import Phase, PlannedStep, plan_training


def test_plan_is_fixed_by_the_seed_and_trains_every_record_each_epoch() -> None:
    lengths = [int(n) for n in torch.randint(5, 500, (100,), generator=torch.Generator().manual_seed(0))]
    phases = [Phase("warmup", range(20), epochs=1), Phase("main", range(20, 100), epochs=2)]

    def plan(seed: int, group_by_length: bool = True) -> list[PlannedStep]:
        return plan_training(
            phases,
            lengths,
            batch_size=4,
            world_size=2,
            gradient_accumulation_steps=2,
            seed=seed,
            group_by_length=group_by_length,
        )

    steps = plan(seed=3)
    assert steps == plan(seed=3) and steps != plan(seed=4)
    assert [s.phase for s in steps] == sorted((s.phase for s in steps), key=lambda p: p != "warmup")
    for epoch, expected in ((0, set(range(20))), (1, set(range(20, 100))), (2, set(range(20, 100)))):
        assert set().union(*(s.indices() for s in steps if s.epoch == epoch)) == expected
    assert all(len(batch) == 4 for s in steps for batch in s.for_rank(1))
    settings = {"batch_size": 4, "world_size": 2, "gradient_accumulation_steps": 2, "seed": 3}
    assert plan_training(phases, lengths, **settings, max_steps=5) == steps[:5]  # type: ignore[arg-type]

    def padding(steps: list[PlannedStep]) -> float:
        batches = [batch for s in steps for per_rank in s.micro_batches for batch in per_rank]
        slots = sum(max(lengths[i] for i in b) * len(b) for b in batches)
        return 1 - sum(lengths[i] for b in batches for i in b) / slots

    assert padding(steps) < 0.5 * padding(plan(seed=3, group_by_length=False))
