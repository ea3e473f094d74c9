"""The ``langchain-aligner`` command line: ``serve``, ``export``, ``eval`` and ``train``.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and ``run(args) -> int``;
this module only wires them together, so ``langchain-aligner --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("langchain_aligner.server.cli", "Serve an Aligner over TGI's HTTP API and OpenAI's routes."),
    "export": ("langchain_aligner.export_cli", "Write a model in the layout TGI and vLLM load."),
    "eval": ("langchain_aligner.evaluation.cli", "Judge original vs corrected answers; reference metrics."),
    "train": ("langchain_aligner_train.cli", "Fine-tune an Aligner (sft) or the upstream model (sft, dpo)."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="langchain-aligner", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default: INFO).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``langchain-aligner`` script."""
    args = build_parser().parse_args(argv)
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=args.log_level.upper(), format=log_format)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
