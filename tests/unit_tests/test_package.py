"""The package's public names resolve, and the agent middleware is imported only when asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

import langchain_aligner


@pytest.mark.parametrize("name", langchain_aligner.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(langchain_aligner, name) is not None


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NotAThing'"):
        langchain_aligner.NotAThing  # noqa: B018


def test_importing_the_package_does_not_import_langchain_agents() -> None:
    code = "import sys, langchain_aligner; print('langchain.agents' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
