"""``langchain-aligner export``: write any Aligner (directory, GGUF, or base + LoRA adapter) for TGI/vLLM."""

from __future__ import annotations

import argparse
from pathlib import Path

from langchain_aligner.models import export_model, load_model_and_tokenizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="Model directory or .gguf file (a training output works).")
    parser.add_argument("output", type=Path, help="Directory to write (replaced if it exists).")
    parser.add_argument("--adapter", type=Path, help="A LoRA adapter directory to merge into the model.")
    parser.add_argument(
        "--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"], help="Weight dtype to write."
    )


def run(args: argparse.Namespace) -> int:
    model, tokenizer = load_model_and_tokenizer(args.source)
    if args.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(args.adapter)).merge_and_unload()
    out = export_model(model, tokenizer, args.output, dtype=args.dtype)
    print(f"exported to {out}: {sorted(p.name for p in out.iterdir())}")
    return 0
