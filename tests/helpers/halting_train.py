"""``python -m tests.helpers.halting_train STEP {sft,dpo} ...``: ``langchain-aligner train sft ...`` (or
``dpo``) whose ranks stop and wait, never to train again, once the checkpoint of step ``STEP`` is saved on
every rank; the test that launched it then kills the run there, at a known point (a resume test must resume
a run that was really interrupted)."""

from __future__ import annotations

import sys
import threading
from typing import Any

from langchain_aligner_train.cli import main
from langchain_aligner_train.trainer import SFTTrainer


def halt_after(step: int, command: str = "sft") -> None:
    """Make the checkpoint save of ``command``'s trainer (:meth:`SFTTrainer.save_checkpoint`, or TRL's and
    transformers' ``Trainer._save_checkpoint`` for ``dpo``) wait forever once it has saved step ``step``."""
    from transformers import Trainer

    trainer, name = (SFTTrainer, "save_checkpoint") if command == "sft" else (Trainer, "_save_checkpoint")
    save = getattr(trainer, name)

    def save_then_halt(self: Any, *args: Any, **kwargs: Any) -> None:
        save(self, *args, **kwargs)
        if (self.step if command == "sft" else self.state.global_step) == step:
            threading.Event().wait()

    setattr(trainer, name, save_then_halt)


if __name__ == "__main__":
    # The DeepSpeed launcher may put --local_rank=N first; the training command line takes it anywhere.
    args = [a for a in sys.argv[1:] if not a.startswith("--local_rank=")]
    halt_after(int(args[0]), args[1])
    sys.exit(main([*(a for a in sys.argv[1:] if a.startswith("--local_rank=")), *args[1:]]))
