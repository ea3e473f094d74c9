"""Training, ``langchain-aligner train {sft,dpo} --config CONFIG.yaml [key=value ...]``: its command line.

The same command runs as ``python -m langchain_aligner_train {sft,dpo} ...``, the form the DeepSpeed launcher
starts each rank with: ``deepspeed --num_gpus N --module langchain_aligner_train sft --config ...``. The
launcher's ``--local_rank=N`` may come before the subcommand; it is handed on to the subcommand. Each
subcommand's module has its own parser (``langchain-aligner train sft --help`` lists every config key); bad
input is reported in one line (:func:`report_input_errors`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from collections.abc import Iterator, Sequence

from langchain_aligner.records import RecordError

from .errors import TrainingInputError
from .run_lock import launch_rank

__all__ = [
    "COMMANDS",
    "PACKAGE",
    "PROG",
    "RANK0_REPORT_WAIT_S",
    "add_arguments",
    "main",
    "report_input_errors",
    "run",
]

PROG = "langchain-aligner train"
"""The command's name in usage lines and one-line errors (``langchain-aligner train sft: error: ...``)."""

PACKAGE = "langchain_aligner_train"
"""The import name the train/ folder installs under (``python -m``/``deepspeed --module`` run it)."""

COMMANDS = {
    "sft": "supervised fine-tuning of an Aligner on Q-A-C records (or of the upstream model: task=upstream)",
    "dpo": "preference tuning of the upstream model on (correction > original answer) pairs",
}
"""Each subcommand, a module of this package with ``main(argv) -> int``, and what it does."""

RANK0_REPORT_WAIT_S = 30.0
"""How long a rank other than 0 waits after bad input before it exits: rank 0 meets the same input and
reports it, and the launcher then stops the other ranks (an earlier exit could have it stop rank 0 first)."""


@contextlib.contextmanager
def report_input_errors(prog: str) -> Iterator[None]:
    """Turn a :class:`TrainingInputError` or a bad record (:class:`~langchain_aligner.records.RecordError`)
    raised inside into ``PROG: error: MESSAGE``, one line on stderr from rank 0 only (no traceback), and exit
    status 2, as argparse reports a bad argument."""
    try:
        yield
    except (TrainingInputError, RecordError) as error:
        if launch_rank() == 0:
            print(f"{prog}: error: {error}", file=sys.stderr)
        else:
            time.sleep(RANK0_REPORT_WAIT_S)
        raise SystemExit(2) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the subcommand and its arguments to ``parser``: ``langchain-aligner train``'s or :func:`main`'s."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "subcommands (SUBCOMMAND --help lists its options and every config key):" + "".join(
        f"\n  {name:<5} {text}" for name, text in COMMANDS.items()
    )
    parser.add_argument("subcommand", choices=list(COMMANDS), help="sft or dpo")
    parser.add_argument(
        "arguments",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="the subcommand's arguments: --config CONFIG.yaml [--resume] [key=value ...]",
    )


def run(args: argparse.Namespace) -> int:
    """Run the parsed subcommand with its arguments; returns its exit status."""
    module = importlib.import_module(f".{args.subcommand}", __package__)
    return int(module.main(args.arguments) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m langchain_aligner_train SUBCOMMAND ...``, as ``langchain-aligner train``; the DeepSpeed
    launcher's ``--local_rank=N``, wherever it is, goes to the subcommand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    launcher_args = [arg for arg in argv if arg.startswith("--local_rank=")]
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args([arg for arg in argv if arg not in launcher_args])
    args.arguments = [*args.arguments, *launcher_args]
    return run(args)
