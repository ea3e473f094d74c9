"""examples/quickstart.py's word diff of the original and the corrected answer."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.helpers.examples import QUICKSTART, load_script, sides_of


@pytest.fixture(scope="module")
def quickstart() -> ModuleType:
    """The quickstart script, imported as a module (for its constants and ``word_diff``)."""
    return load_script(QUICKSTART)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("a b c", "a b c"),
        ("a b c", "a x c"),
        ("a b c", "x y"),
        ("", "new words"),
        ("old words", ""),
        ("keep this, drop that", "keep this, add more and more"),
    ],
)
def test_word_diff_describes_both_texts(quickstart: ModuleType, before: str, after: str) -> None:
    diff = quickstart.word_diff(before, after)
    assert sides_of(diff) == (before, after)
    assert ("[-" in diff or "{+" in diff) == (before.split() != after.split())
