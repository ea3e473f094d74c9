"""``python -m tests.halting_train STEP sft ...``: ``python -m train sft ...`` whose ranks stop and wait,
never to train again, once the checkpoint of step ``STEP`` is saved on every rank; the test that launched it
then kills the run there, at a known point (a resume test must resume a run that was really interrupted)."""

from __future__ import annotations

import sys
import threading
from typing import Any

from train.__main__ import main
from train.trainer import SFTTrainer


def halt_after(step: int) -> None:
    """Make :meth:`SFTTrainer.save_checkpoint` wait forever once it has saved the checkpoint of ``step``."""
    save = SFTTrainer.save_checkpoint

    def save_then_halt(self: SFTTrainer, *args: Any, **kwargs: Any) -> None:
        save(self, *args, **kwargs)
        if self.step == step:
            threading.Event().wait()

    SFTTrainer.save_checkpoint = save_then_halt  # type: ignore[method-assign]


if __name__ == "__main__":
    # The DeepSpeed launcher may put --local_rank=N first; `train`'s entry point takes it anywhere.
    args = [a for a in sys.argv[1:] if not a.startswith("--local_rank=")]
    halt_after(int(args[0]))
    sys.exit(main([*(a for a in sys.argv[1:] if a.startswith("--local_rank=")), *args[1:]]))
