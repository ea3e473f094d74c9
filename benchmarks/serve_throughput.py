"""Throughput of the standalone server with 1, 8 and 32 concurrent clients: tokens/s and latency percentiles.

Serves the embedded default model (SmolLM2-135M-Instruct) or ``--model`` with the server's app on 127.0.0.1
(uvicorn in a thread) and drives it with ``huggingface_hub``'s ``AsyncInferenceClient.text_generation``.
A level of ``c`` clients sends ``max(c, --requests)`` greedy requests (Aligner prompts built from the
AlpacaEval question-answer pairs of ``../shared/data``, or stand-ins without it), each client its share one
after another; concurrency 1 is the sequential baseline that tokens/s ratios are taken against. Each dtype
(``--dtype``; default float32, and bfloat16 too where the CPU computes it natively, the dtype ``serve``
then picks) is measured in turn in this process, and compared with the first one at the same concurrency.
Prints a Markdown table, a row per level as it is measured.

    python benchmarks/serve_throughput.py [--requests 8] [--max-new-tokens 32] [--concurrency 1 8 32]
        [--dtype float32 bfloat16]

On a CPU shared with other work, ``OMP_NUM_THREADS=1`` keeps torch's threads from spinning against it, and
tokens per CPU-second (this process's CPU time: server, engine and clients) says what a level costs whatever
else the machine runs; the ratio between dtypes is taken on it.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import AsyncInferenceClient

from langchain_aligner import ALIGNER_V1
from langchain_aligner.models import load_model_and_tokenizer, preferred_dtype
from langchain_aligner.server.app import create_app
from langchain_aligner.server.background import run_server_in_thread
from langchain_aligner.server.engine import BatchingEngine

DATA = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "alpaca_eval_aligner2b"
    / "aligner-2b_gpt-4-turbo-2024-04-09.json.gz"
)


@dataclass(frozen=True)
class Level:
    """What one concurrency level measured."""

    concurrency: int
    tokens: int
    seconds: float
    cpu_seconds: float
    latencies_ms: list[float]
    max_batch_size: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds

    @property
    def tokens_per_cpu_second(self) -> float:
        return self.tokens / self.cpu_seconds


def load_prompts(count: int, answer_chars: int) -> list[str]:
    """``count`` Aligner prompts: real question-answer pairs when the shared data is there."""
    if DATA.is_file():
        records = json.loads(gzip.decompress(DATA.read_bytes()))[:count]
        pairs = [(r["instruction"], r["original_output"]) for r in records]
    else:
        pairs = [
            (f"How do I make tea? ({i})", "Boil water, add the tea bag, wait three minutes.")
            for i in range(count)
        ]
    return [ALIGNER_V1.format(question, answer[:answer_chars]) for question, answer in pairs]


async def run_level(
    url: str, engine: BatchingEngine, prompts: list[str], concurrency: int, new_tokens: int
) -> Level:
    """Send ``prompts`` through ``concurrency`` clients, each sending its share one request after another."""
    client = AsyncInferenceClient(url)
    latencies: list[float] = []
    tokens = 0

    async def one_client(share: list[str]) -> None:
        nonlocal tokens
        for prompt in share:
            start = time.perf_counter()
            output = await client.text_generation(prompt, max_new_tokens=new_tokens, details=True)
            latencies.append((time.perf_counter() - start) * 1000)
            assert output.details is not None
            tokens += output.details.generated_tokens

    steps_before = engine.stats.batch_sizes
    start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one_client(prompts[i::concurrency]) for i in range(concurrency)))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    await client.close()
    used = [size for size, steps in engine.stats.batch_sizes.items() if steps > steps_before.get(size, 0)]
    return Level(concurrency, tokens, seconds, cpu_seconds, latencies, max(used, default=0))


def percentile(values: list[float], q: int) -> float:
    """The ``q``-th percentile (inclusive method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def measure(
    url: str,
    engine: BatchingEngine,
    prompts: list[str],
    levels: list[int],
    args: argparse.Namespace,
    dtype: str,
    first_dtype: dict[int, float],
) -> None:
    """Print a row per concurrency level; ``first_dtype`` holds (or receives) the first dtype's tokens per
    CPU-second."""
    await run_level(url, engine, prompts[:1], 1, args.max_new_tokens)  # warm-up
    sequential = None
    for concurrency in levels:
        level = await run_level(
            url, engine, prompts[: max(args.requests, concurrency)], concurrency, args.max_new_tokens
        )
        speed, cost = level.tokens_per_second, level.tokens_per_cpu_second
        sequential = sequential or speed
        reference = first_dtype.setdefault(concurrency, cost)
        print(
            f"| {dtype} | {concurrency} | {len(level.latencies_ms)} | {level.tokens} | {level.seconds:.2f} "
            f"| {speed:.1f} | {speed / sequential:.2f}x | {cost:.1f} | {cost / reference:.2f}x "
            f"| {percentile(level.latencies_ms, 50):.0f} | {percentile(level.latencies_ms, 99):.0f} "
            f"| {level.max_batch_size} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="Model directory or GGUF file (default: the embedded model).")
    parser.add_argument("--requests", type=int, default=8, help="Fewest requests per level (default: 8).")
    parser.add_argument(
        "--max-new-tokens", type=int, default=32, help="New tokens per request (default: 32)."
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="Concurrent clients.")
    parser.add_argument(
        "--answer-chars", type=int, default=300, help="Characters of each answer in a prompt."
    )
    parser.add_argument(
        "--dtype",
        nargs="+",
        default=None,
        help="Dtypes to measure in turn, the first one the baseline (default: float32, plus bfloat16 where "
        "the CPU computes it natively).",
    )
    parser.add_argument("--device", default="cpu", help="Torch device.")
    args = parser.parse_args()

    dtypes = args.dtype or list(dict.fromkeys(["float32", preferred_dtype(args.device)]))
    levels = sorted(set(args.concurrency) | {1})
    prompts = load_prompts(max(args.requests, *levels), args.answer_chars)
    first_dtype: dict[int, float] = {}
    for dtype in dtypes:
        model, tokenizer = load_model_and_tokenizer(args.model, dtype=dtype, device=args.device)
        engine = BatchingEngine(model, tokenizer, model_id="benchmark", max_batch_size=max(levels))
        if not first_dtype:
            prompt_tokens = [engine.count_tokens(p) for p in prompts]
            print(
                f"Greedy, {args.max_new_tokens} new tokens per request, prompts of {min(prompt_tokens)}-"
                f"{max(prompt_tokens)} tokens, {args.device} ({torch.get_num_threads()} torch threads), "
                "HTTP on 127.0.0.1\n"
            )
            print(
                "| dtype | clients | requests | tokens | seconds | tokens/s | vs sequential | tokens/CPU-s "
                f"| vs {dtype} | p50 ms | p99 ms | max batch |"
            )
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
        with run_server_in_thread(create_app(engine)) as url:
            asyncio.run(measure(url, engine, prompts, levels, args, dtype, first_dtype))


if __name__ == "__main__":
    main()
