"""Exceptions raised by langchain-aligner."""

from __future__ import annotations

__all__ = ["AlignerError", "AlignerBackendError", "AlignerInputError", "AlignerTimeoutError"]


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
