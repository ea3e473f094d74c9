"""Which training setting is fastest on this CPU? tokens/s of SmolLM2-135M-Instruct per setting.

Each setting runs in its own process (fresh memory, same threads): forward, backward and an AdamW step on a
batch of ``--batch`` rows of ``--length`` tokens (the ``aligner-tiny`` mix averages about 213 tokens a record,
so 224 is its typical padded length), one warm-up step, then the best of ``--steps`` timed steps. The ratio is
against fp32 LoRA measured in the same run. Also printed: the padding share of the mix's real lengths under
random batching and under the trainer's length grouping, which bounds what padding-free packing could gain.

    python benchmarks/train_cpu_settings.py            # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETTINGS: dict[str, dict[str, object]] = {
    "fp32, LoRA r32 all projections": {"precision": "fp32", "lora": 32},
    "bf16 autocast, LoRA r32 all projections": {"precision": "autocast", "lora": 32},
    "bf16 weights, LoRA r32 all projections": {"precision": "bf16", "lora": 32},
    "bf16 autocast, LoRA r16 all projections": {"precision": "autocast", "lora": 16},
    "bf16 autocast, LoRA r32 attention only": {"precision": "autocast", "lora": 32, "attention_only": True},
    "bf16 autocast, LoRA r32 + gradient checkpointing": {
        "precision": "autocast",
        "lora": 32,
        "checkpointing": True,
    },
    "bf16 autocast, full fine-tuning": {"precision": "autocast", "lora": None},
}
BASELINE = "fp32, LoRA r32 all projections"
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL_PROJECTIONS = [*ATTENTION, "gate_proj", "up_proj", "down_proj"]


def measure(setting: dict[str, object], batch: int, length: int, steps: int) -> float:
    """tokens/s of one setting (the best timed step), in this process."""
    import torch
    from peft import LoraConfig, get_peft_model

    from langchain_aligner.models import default_model_dir, load_model_and_tokenizer

    torch.manual_seed(0)
    model, _ = load_model_and_tokenizer(default_model_dir(adapter_dir=None))
    if setting["precision"] == "bf16":
        model.to(torch.bfloat16)
    rank = setting["lora"]
    if isinstance(rank, int):
        targets = ATTENTION if setting.get("attention_only") else ALL_PROJECTIONS
        model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets))
    if setting.get("checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    inputs = torch.randint(100, 40_000, (batch, length))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=setting["precision"] == "autocast"):
            loss = model(input_ids=inputs, labels=inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return batch * length / min(times[1:])


def padding_shares(mix: str, batch: int) -> tuple[float, float]:
    """Padding share of the mix's real record lengths: random batches vs the trainer's length grouping."""
    import random

    from transformers import AutoTokenizer

    from langchain_aligner.models import default_model_dir
    from langchain_aligner_train.batching import Phase, plan_training
    from langchain_aligner_train.mixes import build_mix
    from langchain_aligner_train.tokenization import encode_records

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_dir(adapter_dir=None)))
    records = build_mix(mix, ROOT.parent / "shared" / "data").training_records()
    lengths = list(encode_records(records, tokenizer, max_length=512)["length"])

    def share(batches: list[list[int]]) -> float:
        real = sum(lengths[i] for b in batches for i in b)
        slots = sum(max(lengths[i] for i in b) * len(b) for b in batches)
        return 1 - real / slots

    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    shuffled = [order[i : i + batch] for i in range(0, len(order), batch)]
    plan = plan_training(
        [Phase("main", range(len(lengths)), epochs=1)],
        lengths,
        batch_size=batch,
        world_size=1,
        gradient_accumulation_steps=1,
        seed=42,
    )
    grouped = [step.indices() for step in plan]
    return share(shuffled), share(grouped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=224)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--mix", default="aligner-tiny")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one setting, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(SETTINGS[args.one], args.batch, args.length, args.steps)))
        return
    results = {}
    for name in SETTINGS:
        command = [sys.executable, __file__, "--one", name, "--batch", str(args.batch)]
        command += ["--length", str(args.length), "--steps", str(args.steps)]
        output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        results[name] = json.loads(output.strip().splitlines()[-1])
        print(f"measured {name}: {results[name]:.0f} tokens/s", file=sys.stderr, flush=True)
    print(f"\nSmolLM2-135M-Instruct, batch {args.batch} x {args.length} tokens, best of {args.steps} steps\n")
    print("| setting | tokens/s | vs fp32 LoRA |")
    print("| --- | ---: | ---: |")
    for name, speed in results.items():
        print(f"| {name} | {speed:.0f} | {speed / results[BASELINE]:.2f}x |")
    random_share, grouped_share = padding_shares(args.mix, args.batch)
    print(
        f"\nPadding share of the {args.mix} mix's records in batches of {args.batch}: random "
        f"{random_share:.1%}, length-grouped {grouped_share:.1%} (the most padding-free packing could save)."
    )
    print(f"Median of settings: {statistics.median(results.values()):.0f} tokens/s")


if __name__ == "__main__":
    main()
