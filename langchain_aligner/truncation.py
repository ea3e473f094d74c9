"""Fitting an over-long question-answer pair into the backend's input limit.

Only the question and the answer are shortened, never the template. The question keeps its **end** (the
actual ask usually follows the context it quotes); the answer keeps its **beginning** (the Aligner rewrites
an answer from the start). The answer gets the larger share: the question keeps at most half of the budget
unless the answer leaves more room.

Counting uses the backend's tokenizer when it has one. Without one, the UTF-8 byte length is used, which is
never below the token count of a byte-level tokenizer: the result fits, at the price of cutting more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from langchain_aligner.errors import AlignerInputError
from langchain_aligner.templates import AlignerTemplate

__all__ = ["FittedPair", "fit_pair", "fits_without_counting"]

#: Tokens kept free for special tokens the server may add (BOS) and tokenizer boundary effects.
MARGIN = 4


@dataclass(frozen=True)
class FittedPair:
    """The prompt to send, and whether the question or answer had to be shortened."""

    prompt: str
    truncated: bool


def fit_pair(
    template: AlignerTemplate,
    question: str,
    answer: str,
    *,
    limit: int | None,
    count_tokens: Callable[[str], int | None],
    on_injection: str = "escape",
) -> FittedPair:
    """Format the prompt, shortening question and answer until it has at most ``limit`` tokens.

    Raises:
        AlignerInputError: the template alone does not fit, or ``on_injection="raise"`` found a marker
            (:class:`~langchain_aligner.templates.TemplateInjectionError`).
    """
    prompt = template.format(question, answer, on_injection=on_injection)
    if fits_without_counting(prompt, limit):
        return FittedPair(prompt, False)
    assert limit is not None
    count = _counter(count_tokens, prompt)
    if count(prompt) + MARGIN <= limit:
        return FittedPair(prompt, False)
    budget = limit - MARGIN - count(template.format("", ""))
    if budget < 2:
        raise AlignerInputError(
            f"the template alone needs more than the {limit} prompt tokens allowed (the input limit, less "
            "room for max_new_tokens): raise the limit or lower max_new_tokens"
        )
    q_tokens, a_tokens = count(question), count(answer)
    while True:
        q_budget = min(q_tokens, max(budget - a_tokens, budget // 2))
        q_cut = _keep(question, q_tokens, q_budget, count, keep_end=True)
        a_cut = _keep(answer, a_tokens, budget - q_budget, count, keep_end=False)
        prompt = template.format(q_cut, a_cut, on_injection=on_injection)
        excess = count(prompt) + MARGIN - limit
        if excess <= 0:
            return FittedPair(prompt, True)
        budget -= max(excess, 1)


def fits_without_counting(prompt: str, limit: int | None) -> bool:
    """True if ``prompt`` surely fits: no limit, or fewer UTF-8 bytes than the limit (no token is shorter)."""
    return limit is None or len(prompt.encode()) + MARGIN <= limit


def _counter(count_tokens: Callable[[str], int | None], probe: str) -> Callable[[str], int]:
    if count_tokens(probe) is None:
        return lambda text: len(text.encode())
    return lambda text: count_tokens(text) or 0


def _keep(text: str, tokens: int, budget: int, count: Callable[[str], int], *, keep_end: bool) -> str:
    """The longest start (or end) of ``text`` found with at most ``budget`` tokens."""
    if tokens <= budget:
        return text
    chars = len(text) * budget // max(tokens, 1)
    while chars > 0:
        piece = text[len(text) - chars :] if keep_end else text[:chars]
        used = count(piece)
        if used <= budget:
            return piece
        chars = min(chars - 1, chars * budget // used)
    return ""
