"""Entry point: ``python -m train {sft,dpo} --config CONFIG.yaml [key=value ...]``.

Also works under the DeepSpeed launcher: ``deepspeed --num_gpus N --module train sft --config ...``.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "sft": "train.sft",  # supervised fine-tuning: an Aligner on Q-A-C records
    "dpo": "train.dpo",  # preference tuning of the upstream model on (correction > original) pairs
}
HELP = {
    "sft": "supervised fine-tuning of an Aligner on Q-A-C records (or of the upstream model: task=upstream)",
    "dpo": "preference tuning of the upstream model on (correction > original answer) pairs",
}
USAGE = f"usage: python -m train {{{','.join(COMMANDS)}}} --config CONFIG.yaml [key=value ...]"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The DeepSpeed launcher puts `--local_rank=N` before the subcommand: hand it on to the subcommand.
    launcher_args = [a for a in argv if a.startswith("--local_rank=")]
    argv = [a for a in argv if not a.startswith("--local_rank=")]
    if argv[:1] in (["-h"], ["--help"]):
        commands = "".join(f"\n  {name:<5} {text}" for name, text in HELP.items())
        print(f"{USAGE}\n\nsubcommands (python -m train SUBCOMMAND --help for its options):{commands}")
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]])
    return int(module.main(argv[1:] + launcher_args) or 0)


if __name__ == "__main__":
    sys.exit(main())
