"""The installed training package, run as users run it (``langchain-aligner train`` and ``python -m
langchain_aligner_train``), is not shadowed by a ``train.py`` or ``train/`` in the working directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from langchain_aligner.testing import cli_command
from langchain_aligner_train.cli import PACKAGE

USER_CODE = "import pathlib; pathlib.Path('shadowed').write_text(__name__)\n"
"""What the user's own ``train`` files run when imported: they leave a mark in the working directory."""


@pytest.mark.parametrize(
    "command",
    [cli_command("train", "sft", "--help"), [sys.executable, "-m", PACKAGE, "sft", "--help"]],
    ids=["langchain-aligner train", "python -m langchain_aligner_train"],
)
def test_a_train_py_or_train_package_in_the_working_directory_does_not_shadow_training(
    command: list[str], tmp_path: Path
) -> None:
    (tmp_path / "train.py").write_text(USER_CODE)
    (tmp_path / "train").mkdir()
    for name in ("__init__.py", "__main__.py", "sft.py", "cli.py"):
        (tmp_path / "train" / name).write_text(USER_CODE)
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage: langchain-aligner train sft")
    assert "learning_rate" in result.stdout and "lora.r" in result.stdout  # the config keys, from the package
    assert not (tmp_path / "shadowed").exists()
