"""benchmarks/overhead.py runs as shipped: its sanity check (both arms give the same text) holds."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.paths import BENCHMARKS


def test_overhead_benchmark_runs_and_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "overhead.py"), "--calls", "2", "--block", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "AlignerRunnable.invoke" in done.stdout
