"""Held-out chrF of the tiny Aligner (``make aligner-tiny``) against the official Aligner-2B corrections.

The held-out records are the ones ``train/configs/aligner-tiny.yaml`` kept out of training (``eval_share``,
drawn with its seed, exactly as ``python -m train sft`` drew them). Each is corrected through
:class:`~langchain_aligner.AlignerRunnable` on the in-process transformers backend (greedy, the serving
path's template and truncation) and scored with sacrebleu's chrF against the Aligner-2B correction, next to
the copy-the-answer baseline (the answer, whole and cut to the same token budget as the corrections).

    python benchmarks/aligner_tiny_eval.py [--model DIR] [--limit 20] [--max-new-tokens 128] [--base]

``--model`` defaults to the embedded default Aligner (with the installed adapter merged in); ``--base`` also
scores SmolLM2-135M-Instruct without the adapter. The data are read from ``../shared/data`` at run time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from langchain_aligner.backends import TransformersBackend
from langchain_aligner.generation import GenerationParams
from langchain_aligner.models import default_model_dir
from langchain_aligner.runnable import AlignerRunnable
from train.config import CONFIG_DIR, SFTConfig, load_config
from train.sft import load_records, split_records


def correct_all(model_dir: Path, records: list[Any], config: SFTConfig, max_new_tokens: int) -> list[str]:
    """Greedy corrections of ``records`` by the model in ``model_dir``."""
    aligner = AlignerRunnable(
        backend=TransformersBackend(model_dir),
        template=config.template,
        generation=GenerationParams(max_new_tokens=max_new_tokens),
        max_input_tokens=config.max_length - max_new_tokens,
        on_error="raise",
    )
    corrections = [aligner.invoke({"question": r.question, "answer": r.answer}) for r in records]
    return [c if isinstance(c, str) else str(c.content) for c in corrections]


def chrf(hypotheses: list[str], references: list[str]) -> float:
    """Corpus chrF (sacrebleu defaults: character 6-grams, beta 2)."""
    import sacrebleu

    return float(sacrebleu.corpus_chrf(hypotheses, [references]).score)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG_DIR / "aligner-tiny.yaml")
    parser.add_argument("--model", type=Path, help="model directory (default: the embedded default Aligner)")
    parser.add_argument("--limit", type=int, default=20, help="held-out records to score")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--base", action="store_true", help="also score the base model without the adapter")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    config = load_config(SFTConfig, args.config)
    _, _, held_out = split_records(load_records(config), config)
    records = held_out[: args.limit]
    references = [r.correction for r in records]
    model_dir = args.model or default_model_dir()
    _, tokenizer = TransformersBackend(model_dir).load()

    def cut(text: str) -> str:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: args.max_new_tokens]
        return str(tokenizer.decode(ids))

    budget = f"first {args.max_new_tokens} tokens"
    prefixes = [cut(t) for t in references]
    outputs: dict[str, list[str]] = {
        "copy the answer (whole)": [r.answer for r in records],
        f"copy the answer ({budget})": [cut(r.answer) for r in records],
        f"Aligner-2B correction itself ({budget})": prefixes,
    }
    models = {"aligner-tiny": model_dir}
    if args.base:
        models["SmolLM2-135M-Instruct (no adapter)"] = default_model_dir(adapter_dir=None)
    seconds: dict[str, float] = {}
    for name, directory in models.items():
        start = time.perf_counter()
        outputs[name] = correct_all(directory, records, config, args.max_new_tokens)
        seconds[name] = time.perf_counter() - start
    scores = {name: (chrf(hyp, references), chrf(hyp, prefixes)) for name, hyp in outputs.items()}

    print(
        f"Held-out chrF vs the Aligner-2B corrections: {len(records)} of {len(held_out)} held-out records, "
        f"max_new_tokens={args.max_new_tokens}, model {model_dir}\n"
    )
    print(f"| corrections by | chrF vs whole correction | chrF vs its {budget} |\n| --- | ---: | ---: |")
    for name, (whole, prefix) in scores.items():
        print(f"| {name} | {whole:.2f} | {prefix:.2f} |")
    for name, spent in seconds.items():
        print(f"\n{name}: {spent:.0f} s for {len(records)} corrections")
    if args.json:
        results = {"records": len(records), "chrf": scores, "seconds": seconds, "outputs": outputs}
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
