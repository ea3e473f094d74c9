"""What the ``python -m train`` subcommands share on the command line: bad input reported in one line."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from langchain_aligner.records import RecordError
from train.errors import TrainingInputError
from train.run_lock import launch_rank

__all__ = ["RANK0_REPORT_WAIT_S", "report_input_errors"]

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
