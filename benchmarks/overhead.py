"""What ``AlignerRunnable.invoke`` adds on top of the bare huggingface_hub call to the same TGI server.

Both arms call one local server (the fake TGI of ``langchain_aligner.testing.fake_servers``, on 127.0.0.1)
with the same prompt and parameters; the blocks of calls alternate so that drift hits both arms alike.
Question-answer pairs come from ``../shared/data`` (AlpacaEval answers) when present. Prints median and p90
latency, their ratio and the milliseconds added at the median (goal: under 1 ms).

    python benchmarks/overhead.py [--calls 1000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import InferenceClient

from langchain_aligner import ALIGNER_V1, AlignerRunnable
from langchain_aligner.testing.fake_servers import start_fake_server

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "alpaca_eval_aligner2b" / "aligner-2b_gpt-4-turbo-2024-04-09.json.gz"


def load_pair() -> tuple[str, str]:
    """One real question-answer pair, or a stand-in when the shared data is not beside the checkout."""
    if DATA.is_file():
        record = json.loads(gzip.decompress(DATA.read_bytes()))[0]
        return record["instruction"], record["original_output"]
    return "How do I make a cup of tea?", "Boil water, add the tea bag, wait three minutes."


def timed(call: Callable[[], object], times: int) -> list[float]:
    """Latencies of ``times`` calls, in milliseconds."""
    latencies = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - start) * 1000.0)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="Calls per arm (default: 1000).")
    parser.add_argument("--block", type=int, default=100, help="Calls per alternating block.")
    args = parser.parse_args()

    question, answer = load_pair()
    server = start_fake_server("tgi")
    try:
        client = InferenceClient()
        prompt = ALIGNER_V1.format(question, answer)
        aligner = AlignerRunnable(backend="tgi", url=server.url)  # default settings
        pair = {"question": question, "answer": answer}
        params = {"max_new_tokens": 512, "do_sample": False, "details": True}
        arms: dict[str, Callable[[], object]] = {
            "huggingface_hub InferenceClient.text_generation": lambda: client.text_generation(
                prompt, model=f"{server.url}/generate", **params
            ),
            "AlignerRunnable.invoke": lambda: aligner.invoke(pair),
        }
        # Same text both ways, less the leading space that the runnable drops (as the Aligner writes one).
        reference = client.text_generation(prompt, model=f"{server.url}/generate", **params).generated_text
        assert aligner.invoke(pair).content == reference.lstrip(), "the arms do not produce the same text"
        for call in arms.values():
            timed(call, 50)  # warm-up: connections, /info, imports
        results: dict[str, list[float]] = {name: [] for name in arms}
        while len(results["AlignerRunnable.invoke"]) < args.calls:
            for name, call in arms.items():
                results[name] += timed(call, min(args.block, args.calls - len(results[name])))
    finally:
        server.stop()

    base_name, aligner_name = arms
    base, ours = results[base_name], results[aligner_name]
    rows = [
        (name, statistics.median(values), statistics.quantiles(values, n=10)[-1])
        for name, values in results.items()
    ]
    print(f"\n{args.calls} calls per arm, prompt of {len(prompt)} characters, local fake TGI server\n")
    print(f"| {'arm':<50} | {'median ms':>9} | {'p90 ms':>8} |")
    print(f"|{'-' * 52}|{'-' * 11}|{'-' * 10}|")
    for name, median, p90 in rows:
        print(f"| {name:<50} | {median:>9.3f} | {p90:>8.3f} |")
    added = statistics.median(ours) - statistics.median(base)
    print(f"\nratio (median): {statistics.median(ours) / statistics.median(base):.3f}x")
    print(f"added at the median: {added:.3f} ms (goal: < 1 ms)")


if __name__ == "__main__":
    main()
