"""Helpers for tests that run the example scripts as users do: imported for their constants, or run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.helpers.paths import EXAMPLES

__all__ = ["EXAMPLES", "load_script", "run_script"]


def load_script(path: Path) -> ModuleType:
    """Import a script as a module (for its constants and helpers), without running its ``main``."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(path: Path, *args: str) -> dict[str, str]:
    """Run a script with this Python; return its ``Label: value`` output lines by label (the last of each)."""
    done = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
