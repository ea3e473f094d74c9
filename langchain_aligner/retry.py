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
    Retrying,
    before_sleep_log,
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


def _policy(max_retries: int, backoff: float, max_backoff: float) -> dict:
    return {
        "stop": stop_after_attempt(max_retries + 1),
        "wait": wait_exponential_jitter(initial=backoff, max=max_backoff, jitter=backoff),
        "retry": retry_if_exception(_is_retryable),
        "before_sleep": before_sleep_log(logger, logging.WARNING),
        "reraise": True,
    }


def call_with_retries(
    fn: Callable[[], T], *, max_retries: int, backoff: float, max_backoff: float
) -> tuple[T, int]:
    """Call ``fn``, retrying retryable backend errors; return its result and the number of attempts."""
    retrying = Retrying(**_policy(max_retries, backoff, max_backoff))
    result = retrying(fn)
    return result, retrying.statistics.get("attempt_number", 1)


async def acall_with_retries(
    fn: Callable[[], Awaitable[T]], *, max_retries: int, backoff: float, max_backoff: float
) -> tuple[T, int]:
    """Async :func:`call_with_retries`."""
    retrying = AsyncRetrying(**_policy(max_retries, backoff, max_backoff))

    async def attempt() -> T:  # AsyncRetrying needs a coroutine function, not a lambda returning a coroutine
        return await fn()

    result: T = await retrying(attempt)
    return result, retrying.statistics.get("attempt_number", 1)
