"""The package's public names resolve; unknown names raise AttributeError."""

from __future__ import annotations

import pytest

import langchain_aligner


@pytest.mark.parametrize("name", langchain_aligner.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(langchain_aligner, name) is not None


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NotAThing'"):
        langchain_aligner.NotAThing  # noqa: B018
