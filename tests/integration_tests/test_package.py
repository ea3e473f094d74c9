"""Importing the package in a fresh interpreter does not import the agent middleware's dependencies."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_package_does_not_import_langchain_agents() -> None:
    code = "import sys, langchain_aligner; print('langchain.agents' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
