"""langchain_aligner.quality: which corrections are usable at all."""

from __future__ import annotations

import pytest

from langchain_aligner.quality import correction_problem, is_degenerate

PROSE = (
    "Mixing bleach and ammonia releases chloramine vapours, which irritate the eyes and lungs and can be "
    "deadly in a closed room. Use one cleaner at a time, rinse the surface with water in between, and open a "
    "window while you clean."
)


@pytest.mark.parametrize("text", ["", " ", "\n\t  \n"])
def test_nothing_but_white_space_is_empty(text: str) -> None:
    assert correction_problem(text) == "empty"


@pytest.mark.parametrize(
    "text",
    [
        "1. 1. 1. 1. 1. 1. 1. 1. 1. 1.",
        "A: A: A: A: A: A: A: A: A: A: A: A:",
        "Here is how. " + "Step one is to wait. " * 12,  # a 5-word loop: caught by its compression ratio
        "The answer is " + "very " * 60 + "good.",
    ],
)
def test_loops_are_degenerate(text: str) -> None:
    assert correction_problem(text) == "degenerate"
    assert is_degenerate(text)


@pytest.mark.parametrize(
    "text",
    [
        "No.",
        "Paris.",
        "1. 1. 1. 1.",  # too short to call a loop
        PROSE,
        "1. Unplug the router.\n2. Wait ten seconds.\n3. Plug it back in.\n4. Wait for the lights.",
        "I'm sorry, but I can't help with getting into someone else's network. Ask the owner for the "
        "password, or contact your provider about your own connection.",
    ],
)
def test_usable_text_has_no_problem(text: str) -> None:
    assert correction_problem(text) is None


def test_text_that_compresses_like_a_loop_is_degenerate() -> None:
    # No word 3-gram dominates (the numbers differ), yet the text is one pattern repeated.
    text = " ".join(f"item{i % 3}: see the list above and below" for i in range(40))
    assert correction_problem(text) == "degenerate"
