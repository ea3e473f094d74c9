"""Teacher corrections in a child process interrupted with Ctrl-C: every finished record is kept, and a second
run asks only for the others."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from langchain_aligner_train.teacher import generate_corrections
from tests.helpers.paths import REPOSITORY
from tests.helpers.teacher import PAIRS, EditorModel, written_lines

CTRL_C_SCRIPT = """
import sys
from tests.helpers.teacher import PAIRS, EditorModel
from langchain_aligner_train.teacher import generate_corrections
generate_corrections(PAIRS, EditorModel(block_after=5), sys.argv[1], concurrency=4, progress=False)
"""


def _interruptible() -> None:
    """In the child: SIGINT as a shell gives it (handled, unblocked), whatever the test process inherited or
    set up, so that Python turns it into KeyboardInterrupt."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_every_finished_record(tmp_path: Path) -> None:
    output = tmp_path / "teacher.jsonl"
    run = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, str(output)],
        cwd=REPOSITORY,
        stderr=subprocess.PIPE,
        preexec_fn=_interruptible,
    )
    try:
        while not output.exists() or len(written_lines(output)) < 5:
            assert run.poll() is None, run.stderr.read().decode() if run.stderr else ""
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode != 0 and b"KeyboardInterrupt" in stderr
    assert len(written_lines(output)) == 5
    resumed = EditorModel()
    records = generate_corrections(PAIRS, resumed, output, progress=False)
    assert len(resumed.calls) == len(PAIRS) - 5 and len(records) == len(PAIRS)
    assert (
        len({line["question"] for line in written_lines(output)}) == len(written_lines(output)) == len(PAIRS)
    )
