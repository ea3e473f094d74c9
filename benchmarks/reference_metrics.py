"""chrF and ROUGE-L on the Aligner-2B triples of ../shared/data: how far Aligner-2B moves from the answers.

For each AlpacaEval file (GPT-4 Turbo and Qwen1.5-72B-Chat answers, each corrected by the official Aligner-2B)
the copy-the-answer baseline is scored against the Aligner-2B corrections: 100 would mean Aligner-2B
returned the answers unchanged, so lower scores mean heavier rewrites. This is also the bar any other Aligner
must clear to be closer to Aligner-2B than copying the answer is. For scale, the same for HH-RLHF's
harmless-base test pairs (the rejected last turn against the chosen one, read by
``langchain_aligner_train.builders``).

With ``--aligner-url``, a served Aligner (TGI or OpenAI-compatible) corrects a held-out subset and its
corrections are scored against Aligner-2B's, next to the baseline on the same items and their ratio. The
subset follows ``train/sft.py``'s split rule (``random.Random(seed)`` shuffle of the records of both files in
order, the first ``round(share * n)`` held out), so with the same seed and ``eval_share`` it is the part an
Aligner trained on these two files has not seen.

    python benchmarks/reference_metrics.py
    python benchmarks/reference_metrics.py --aligner-url http://127.0.0.1:8080 --holdout-share 0.05 --seed 42
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from langchain_aligner import AlignerRunnable, GenerationParams
from langchain_aligner.evaluation.records import EvalRecord, load_records, parse_field_map
from langchain_aligner.evaluation.reference import ReferenceMetrics, reference_metrics
from langchain_aligner.evaluation.runner import Evaluation
from langchain_aligner_train.builders import from_hh_rlhf

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data" / "alpaca_eval_aligner2b"
HH_RLHF = ROOT.parent / "shared" / "data" / "hh_rlhf" / "harmless-base-test.jsonl.gz"
FILES = {
    "AlpacaEval GPT-4 Turbo -> Aligner-2B": "aligner-2b_gpt-4-turbo-2024-04-09.json.gz",
    "AlpacaEval Qwen1.5-72B-Chat -> Aligner-2B": "aligner-2b_qwen1.5-72b-chat.json.gz",
}


def load(data_dir: Path) -> dict[str, list[EvalRecord]]:
    """Records per upstream model: question, answer, and Aligner-2B's correction as the reference."""
    loaded = {}
    for name, file_name in FILES.items():
        records = load_records(data_dir / file_name, parse_field_map("alpaca_eval"))
        loaded[name] = [r.model_copy(update={"id": f"{file_name.split('_')[1]}-{r.id}"}) for r in records]
    return loaded


def hh_rlhf(path: Path) -> list[EvalRecord]:
    """HH-RLHF pairs: the dialogue as question, rejected last turn as answer, chosen one as reference."""
    return [
        EvalRecord(id=f"hh-{i}", question=r.question, answer=r.answer, reference=r.correction)
        for i, r in enumerate(from_hh_rlhf(path))
    ]


def baseline_table(groups: dict[str, list[EvalRecord]]) -> list[str]:
    """The copy-the-answer baseline against the references (corrections), per data set."""
    lines = [
        "| Answer vs correction | Items | Unchanged | chrF | ROUGE-L | median item chrF "
        "| median item ROUGE-L | scoring s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, records in groups.items():
        start = time.perf_counter()
        metrics = reference_metrics(records)
        seconds = time.perf_counter() - start
        assert metrics is not None
        unchanged = sum(r.answer.strip() == (r.reference or "").strip() for r in records)
        chrf = statistics.median(item.baseline.chrf for item in metrics.per_item)
        rouge = statistics.median(item.baseline.rouge_l for item in metrics.per_item)
        lines.append(
            f"| {name} | {metrics.items} | {unchanged} | {metrics.baseline.chrf:.2f} "
            f"| {metrics.baseline.rouge_l:.2f} | {chrf:.2f} | {rouge:.2f} | {seconds:.1f} |"
        )
    return lines


def held_out(records: list[EvalRecord], share: float, seed: int) -> list[EvalRecord]:
    """``train/sft.py``'s held-out records: the first ``round(share * n)`` of a ``Random(seed)`` shuffle."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    return [records[i] for i in sorted(order[: round(share * len(records))])]


def served_table(metrics: ReferenceMetrics, model: str | None, failures: int) -> list[str]:
    """A served Aligner's corrections vs the baseline, both against Aligner-2B, and their ratio."""
    assert metrics.correction is not None
    base, served = metrics.baseline, metrics.correction
    return [
        f"| Texts vs Aligner-2B ({metrics.items} held-out items, {failures} failed) | chrF | ROUGE-L |",
        "|---|---:|---:|",
        f"| copy-the-answer baseline | {base.chrf:.2f} | {base.rouge_l:.2f} |",
        f"| served Aligner ({model}) | {served.chrf:.2f} | {served.rouge_l:.2f} |",
        f"| ratio served / baseline | {served.chrf / base.chrf:.3f} | {served.rouge_l / base.rouge_l:.3f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA, help="The alpaca_eval_aligner2b directory.")
    parser.add_argument("--hh-rlhf", type=Path, default=HH_RLHF, help="HH-RLHF harmless-base test file.")
    parser.add_argument("--aligner-url", help="Score this served Aligner on the held-out subset.")
    parser.add_argument("--aligner-backend", choices=["tgi", "openai"], default="tgi")
    parser.add_argument("--aligner-model", help="Model name for an OpenAI-compatible server.")
    parser.add_argument(
        "--holdout-share", type=float, default=0.05, help="Held-out share (train's eval_share)."
    )
    parser.add_argument("--seed", type=int, default=42, help="Split seed (train's seed).")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    per_model = load(args.data_dir)
    hh = (
        {"HH-RLHF harmless-base test: rejected -> chosen": hh_rlhf(args.hh_rlhf)}
        if args.hh_rlhf.is_file()
        else {}
    )
    print("\n".join(baseline_table({**per_model, **hh})))
    if args.aligner_url:
        subset = held_out(
            [r for records in per_model.values() for r in records], args.holdout_share, args.seed
        )
        aligner = AlignerRunnable(
            backend=args.aligner_backend,
            url=args.aligner_url,
            model=args.aligner_model,
            generation=GenerationParams(max_new_tokens=args.max_new_tokens),
        )
        result = Evaluation(aligner=aligner, max_concurrency=args.concurrency).run(subset)
        if result.reference is None or result.reference.correction is None:
            raise SystemExit(f"no correction succeeded: {result.aligner_failures[:3]}")
        print()
        print("\n".join(served_table(result.reference, result.aligner, len(result.aligner_failures))))


if __name__ == "__main__":
    main()
