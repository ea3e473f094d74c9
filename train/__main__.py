"""``python -m langchain_aligner_train {sft,dpo} ...``: the training command line (:mod:`.cli`) as a module,
the form the DeepSpeed launcher runs: ``deepspeed --num_gpus N --module langchain_aligner_train sft ...``."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
