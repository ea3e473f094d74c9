"""Helpers for tests of the example and benchmark scripts: imported for their constants and functions, or run
as users run them; what the quickstart's word diff describes."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.helpers.paths import EXAMPLES

__all__ = ["EXAMPLES", "QUICKSTART", "load_script", "run_script", "sides_of"]

QUICKSTART = EXAMPLES / "quickstart.py"


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """Import a script as a module (for its constants and helpers), without running its ``main``. With a
    ``name``, the module is registered in ``sys.modules`` under it first, as its dataclasses need."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if name is not None:
        module = sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def run_script(path: Path, *args: str) -> dict[str, str]:
    """Run a script with this Python; return its ``Label: value`` output lines by label (the last of each)."""
    done = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)


def sides_of(diff: str) -> tuple[str, str]:
    """The before and after texts a ``[-removed-]{+added+}`` word diff describes."""
    before = re.sub(r"\{\+.*?\+\}", "", re.sub(r"\[-(.*?)-\]", r"\1", diff))
    after = re.sub(r"\[-.*?-\]", "", re.sub(r"\{\+(.*?)\+\}", r"\1", diff))
    return " ".join(before.split()), " ".join(after.split())
