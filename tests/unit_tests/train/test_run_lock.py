"""The run lock is rank 0's: other ranks take none."""

from __future__ import annotations

from pathlib import Path

from langchain_aligner_train.run_lock import hold_run_directory


def test_ranks_other_than_0_take_no_lock(tmp_path: Path) -> None:
    with hold_run_directory(tmp_path / "run", rank=1), hold_run_directory(tmp_path / "run", rank=2):
        assert not (tmp_path / "run").exists()
