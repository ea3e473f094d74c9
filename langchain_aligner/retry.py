"""Bounded retries with exponential backoff for backend calls (tenacity).

Only errors the backend marks ``retryable`` are retried: 429, 5xx, connection failures and timeouts.
A 422 (the request itself is invalid) fails at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from langchain_aligner.errors import AlignerBackendError

__all__ = ["call_with_retries", "acall_with_retries"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, AlignerBackendError) and error.retryable


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    """A warning before each retry that names the call (tenacity's own names the function: ``<lambda>``)."""

    def log(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        logger.warning(
            "%s failed (attempt %d), retrying in %.2f s: %s", what, state.attempt_number, delay, error
        )

    return log


def _policy(max_retries: int, backoff: float, max_backoff: float, what: str) -> dict:
    return {
        "stop": stop_after_attempt(max_retries + 1),
        "wait": wait_exponential_jitter(initial=backoff, max=max_backoff, jitter=backoff),
        "retry": retry_if_exception(_is_retryable),
        "before_sleep": _log_retry(what),
        "reraise": True,
    }


def call_with_retries(
    fn: Callable[[], T], *, max_retries: int, backoff: float, max_backoff: float, what: str = "backend call"
) -> tuple[T, int]:
    """Call ``fn``, retrying retryable backend errors; return its result and the number of attempts.

    ``what`` names the call in the warning logged before each retry (e.g. ``"Aligner call to tgi at ..."``).
    """
    retrying = Retrying(**_policy(max_retries, backoff, max_backoff, what))
    result = retrying(fn)
    return result, retrying.statistics.get("attempt_number", 1)


async def acall_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    max_retries: int,
    backoff: float,
    max_backoff: float,
    what: str = "backend call",
) -> tuple[T, int]:
    """Async :func:`call_with_retries`."""
    retrying = AsyncRetrying(**_policy(max_retries, backoff, max_backoff, what))

    async def attempt() -> T:  # AsyncRetrying needs a coroutine function, not a lambda returning a coroutine
        return await fn()

    result: T = await retrying(attempt)
    return result, retrying.statistics.get("attempt_number", 1)
