"""``langchain-aligner export``: write any Aligner (directory, GGUF, or base + LoRA adapter) for TGI/vLLM."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from langchain_aligner.models import (
    DTYPES,
    check_adapter_dir,
    export_model,
    load_model_and_tokenizer,
    merge_adapter,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``export`` arguments: ``SOURCE OUTPUT [--adapter DIR] [--dtype DTYPE]``."""
    parser.add_argument("source", type=Path, help="Model directory or .gguf file (a training output works).")
    parser.add_argument(
        "output", type=Path, help="Directory to write (replaces an earlier export, never other files)."
    )
    parser.add_argument("--adapter", type=Path, help="A LoRA adapter directory to merge into the model.")
    parser.add_argument("--dtype", default="bfloat16", choices=DTYPES, help="Weight dtype to write.")


def run(args: argparse.Namespace) -> int:
    """Load ``args.source`` (in float32), merge ``args.adapter`` if given, and export; 1 on a bad path."""
    try:
        if args.adapter is not None:
            check_adapter_dir(args.adapter)  # before the model is loaded
        model, tokenizer = load_model_and_tokenizer(args.source)
        if args.adapter is not None:
            model = merge_adapter(model, args.adapter)
        out = export_model(model, tokenizer, args.output, dtype=args.dtype)
    except (FileNotFoundError, FileExistsError) as error:
        print(f"langchain-aligner export: error: {error}", file=sys.stderr)
        return 1
    print(f"exported to {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0
