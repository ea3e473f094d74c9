"""Training throughput: our DeepSpeed SFT trainer (``train/trainer.py``) vs TRL's ``SFTTrainer``.

Both train the same model (SmolLM2-135M-Instruct, or a small random Llama with its tokenizer) on the
same token sequences (real Q-A-C triples from ``../shared/data/alpaca_eval_aligner2b``, encoded once by
``langchain_aligner_train.tokenization.encode_records``; loss on the correction only), with the same max
length, per-device batch size, optimizer (AdamW, lr 2e-5, betas (0.9, 0.95)), precision (fp32 on CPU, bf16
on GPU) and one epoch. Each trainer runs once, in a fresh subprocess of this script (clean
``torch.distributed`` state, a fair peak memory reading); TRL keeps its defaults otherwise (random order,
padding to the batch's longest).

Tokens/s counts the real (non-padding) tokens of the data over the ``train()`` call's wall time. Peak
memory is ``torch.cuda.max_memory_allocated`` on a GPU, else the process's peak RSS.

    python benchmarks/train_throughput.py [--model random|smollm2] [--records 64] [--max-length 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "alpaca_eval_aligner2b"
FILES = ("aligner-2b_gpt-4-turbo-2024-04-09.json.gz", "aligner-2b_qwen1.5-72b-chat.json.gz")
TRAINERS = ("ours", "trl")


def load_tokenizer() -> Any:
    """SmolLM2-135M-Instruct's tokenizer (both models use it)."""
    from transformers import AutoTokenizer

    from langchain_aligner.models import default_model_dir

    return AutoTokenizer.from_pretrained(default_model_dir(adapter_dir=None))


def load_model(kind: str, tokenizer: Any) -> Any:
    """SmolLM2-135M-Instruct, or a small random Llama (4 layers, hidden 256) with its vocabulary."""
    from langchain_aligner.models import default_model_dir, load_model_and_tokenizer
    from langchain_aligner.testing import random_llama

    if kind == "smollm2":
        model, _ = load_model_and_tokenizer(default_model_dir(adapter_dir=None))
    else:
        model = random_llama(tokenizer, hidden_size=256, intermediate_size=768, layers=4, max_positions=4096)
    model.train()
    return model


def encode(tokenizer: Any, records: int, max_length: int) -> Any:
    """The first ``records`` Q-A-C triples (both files, interleaved), encoded as the trainer encodes them."""
    from langchain_aligner_train.builders import from_alpaca_eval
    from langchain_aligner_train.tokenization import encode_records

    gpt4, qwen = (from_alpaca_eval(DATA / name) for name in FILES)
    mixed = [r for pair in zip(gpt4, qwen, strict=True) for r in pair][:records]
    return encode_records(mixed, tokenizer, max_length=max_length)


def run_ours(model: Any, tokenizer: Any, dataset: Any, args: argparse.Namespace, work: Path) -> float:
    from langchain_aligner_train.batching import Phase
    from langchain_aligner_train.config import SFTConfig, load_config
    from langchain_aligner_train.trainer import SFTTrainer, init_distributed

    config = load_config(
        SFTConfig,
        None,
        [
            f"output_dir={work / 'ours'}",
            "num_epochs=1",
            f"per_device_batch_size={args.batch_size}",
            f"max_length={args.max_length}",
            f"precision={args.precision}",
            "deepspeed=ds_zero2.json",
            "warmup_ratio=0",
            "logging_steps=1000000",
            "save_steps=1000000",
        ],
    )
    init_distributed()
    trainer = SFTTrainer(config, model, tokenizer, dataset, [Phase("main", range(len(dataset)), 1)])
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def run_trl(model: Any, tokenizer: Any, dataset: Any, args: argparse.Namespace, work: Path) -> float:
    from trl import SFTConfig, SFTTrainer

    processed = dataset.map(
        lambda row: {"completion_mask": [int(label != -100) for label in row["labels"]]},
        remove_columns=["labels", "attention_mask", "length"],
    )
    config = SFTConfig(
        output_dir=str(work / "trl"),
        num_train_epochs=1,
        per_device_train_batch_size=args.batch_size,
        max_length=args.max_length,
        learning_rate=2e-5,
        adam_beta1=0.9,
        adam_beta2=0.95,
        weight_decay=0.0,
        lr_scheduler_type="cosine",
        bf16=args.precision == "bf16",
        save_strategy="no",
        report_to="none",
        logging_steps=1_000_000,
        disable_tqdm=True,
        seed=42,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=processed, processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def child(args: argparse.Namespace) -> None:
    """Run one trainer and print its measurements as JSON."""
    import torch

    tokenizer = load_tokenizer()
    model = load_model(args.model, tokenizer)
    dataset = encode(tokenizer, args.records, args.max_length)
    tokens = int(sum(dataset["length"]))
    with tempfile.TemporaryDirectory() as work:
        runner = run_ours if args.child == "ours" else run_trl
        seconds = runner(model, tokenizer, dataset, args, Path(work))
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print("RESULT " + json.dumps({"seconds": seconds, "tokens": tokens, "peak_mib": peak}))


def padding_shares(args: argparse.Namespace) -> dict[str, float]:
    """Padding share of each trainer's batches: ours as planned (length-grouped), TRL's estimated from a
    random order (its default sampler) padded to each batch's longest sequence."""
    import torch

    from langchain_aligner_train.batching import plan_epoch

    lengths = list(encode(load_tokenizer(), args.records, args.max_length)["length"])

    def share(batches: list[list[int]]) -> float:
        slots = sum(max(lengths[i] for i in b) * len(b) for b in batches)
        return 1 - sum(lengths) / slots

    planned = plan_epoch(
        range(len(lengths)), lengths, batch_size=args.batch_size, world_size=1, seed=42, epoch=0
    )
    ours = [per_rank[0] for per_rank in planned]
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(42)).tolist()
    trl = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    return {"ours": share(ours), "trl": share(trl)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("random", "smollm2"), default="random")
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None)
    parser.add_argument("--child", choices=TRAINERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.precision is None:
        import torch

        args.precision = "bf16" if torch.cuda.is_available() else "fp32"
    if args.child:
        child(args)
        return 0
    results: dict[str, dict[str, float]] = {}
    for name in TRAINERS:
        command = [sys.executable, __file__, "--child", name, *(argv if argv is not None else sys.argv[1:])]
        command += ["--precision", args.precision]
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(done.stdout[-3000:], done.stderr[-5000:], file=sys.stderr)
            raise SystemExit(f"the {name} run failed ({done.returncode})")
        results[name] = json.loads(lines[-1].removeprefix("RESULT "))
    padding = padding_shares(args)
    speed = {name: r["tokens"] / r["seconds"] for name, r in results.items()}
    print(
        f"SFT throughput: {args.model} model, {args.records} Q-A-C records, max_length {args.max_length}, "
        f"batch {args.batch_size}, {args.precision}, one epoch, one run each\n"
    )
    print("| trainer | seconds | tokens/s | padding share | peak memory (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    labels = {"ours": "ours (DeepSpeed ZeRO-2, length-grouped)", "trl": "TRL SFTTrainer (defaults)"}
    for name, r in results.items():
        cells = [f"{r['seconds']:.1f}", f"{speed[name]:.0f}", f"{padding[name]:.1%}", f"{r['peak_mib']:.0f}"]
        print(f"| {labels[name]} | {' | '.join(cells)} |")
    print(f"\nthroughput ratio ours / TRL: {speed['ours'] / speed['trl']:.2f}x (goal: >= 1.3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
