"""Exceptions raised by langchain-aligner."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_aligner.quality import CorrectionProblem

__all__ = [
    "AlignerError",
    "AlignerBackendError",
    "AlignerCorrectionError",
    "AlignerInputError",
    "AlignerTimeoutError",
]


class AlignerError(Exception):
    """Base class of every error this package raises on purpose."""


class AlignerInputError(AlignerError, ValueError):
    """The input cannot be corrected: empty answer, wrong type, no question found."""


class AlignerBackendError(AlignerError):
    """The backend failed: HTTP error status, an error event in a stream, a broken connection.

    ``status`` is the HTTP status when there was one; ``error_type`` is TGI's ``error_type`` field
    (``validation``, ``overloaded``, ``generation``, ...) when the server sent one. ``retryable`` tells the
    retry policy whether trying again may help (429, 5xx, connection errors).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.retryable = retryable


class AlignerTimeoutError(AlignerBackendError):
    """The backend did not answer within the configured timeout."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class AlignerCorrectionError(AlignerBackendError):
    """The Aligner answered, but its correction cannot replace the answer: it is empty or degenerate.

    ``problem`` is :func:`langchain_aligner.quality.correction_problem`'s verdict (``"empty"`` or
    ``"degenerate"``); ``text`` is the rejected correction. Never retried: the same prompt would give the same
    text under greedy decoding.
    """

    def __init__(self, problem: CorrectionProblem, text: str) -> None:
        what = "empty" if problem == "empty" else "degenerate (a repeated phrase or a loop)"
        super().__init__(f"the Aligner's correction is {what}")
        self.problem: CorrectionProblem = problem
        self.text = text
