"""The one small interface every Aligner backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from langchain_aligner.errors import AlignerBackendError
from langchain_aligner.generation import GenerationParams

__all__ = [
    "AlignerBackend",
    "Generation",
    "GenerationDelta",
    "malformed_reply",
    "server_error",
    "stream_cut_short",
]


@dataclass(frozen=True)
class Generation:
    """A finished generation: the text and what the backend told about it."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class GenerationDelta:
    """One piece of a streamed generation. The last piece carries the finished ``generation``."""

    text: str
    generation: Generation | None = None


class AlignerBackend(ABC):
    """Turns a prompt into a completion. Backends know nothing of questions, answers or templates.

    Errors are raised as :class:`~langchain_aligner.errors.AlignerBackendError` (with ``retryable`` set
    for 429/5xx/connection failures) so the caller can apply one retry policy to every backend; so is a
    reply that is not a generation (:func:`malformed_reply`), and a stream that ends before the piece that
    carries its finished ``generation`` (:func:`stream_cut_short`).
    """

    #: Short name reported in response metadata, e.g. ``"tgi"``.
    name: str = "base"

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The model the backend serves, as reported in response metadata."""

    @abstractmethod
    def generate(self, prompt: str, params: GenerationParams) -> Generation:
        """Generate a completion of ``prompt``."""

    @abstractmethod
    async def agenerate(self, prompt: str, params: GenerationParams) -> Generation:
        """Async :meth:`generate`."""

    @abstractmethod
    def stream(self, prompt: str, params: GenerationParams) -> Iterator[GenerationDelta]:
        """Yield the completion piece by piece as it is generated."""

    @abstractmethod
    def astream(self, prompt: str, params: GenerationParams) -> AsyncIterator[GenerationDelta]:
        """Async :meth:`stream`."""

    def max_input_tokens(self) -> int | None:
        """The most prompt tokens the backend accepts (TGI's ``max_input_tokens``), or ``None``."""
        return None

    def max_total_tokens(self) -> int | None:
        """The most prompt plus generated tokens (the context length), or ``None`` when unknown."""
        return None

    def prompt_limit(self, max_new_tokens: int) -> int | None:
        """The most prompt tokens that leave room for ``max_new_tokens``: ``max_input_tokens``, and at most
        ``max_total_tokens - max_new_tokens``; ``None`` when the backend knows neither."""
        total = self.max_total_tokens()
        limits = [n for n in (self.max_input_tokens(), total and total - max_new_tokens) if n is not None]
        return min(limits) if limits else None

    def count_tokens(self, text: str) -> int | None:
        """Number of tokens of ``text`` in the backend's tokenizer, or ``None`` when it cannot tell."""
        return None


def server_error(message: str, *, status: int | None, error_type: str | None = None) -> AlignerBackendError:
    """An error the server answered with ``status`` (``None`` when unknown): retryable when 429 or 5xx."""
    retryable = status is not None and (status == 429 or status >= 500)
    return AlignerBackendError(message, status=status, error_type=error_type, retryable=retryable)


def malformed_reply(server: str, error: BaseException) -> AlignerBackendError:
    """A reply the client could not read as a generation (a proxy's HTML page with status 200, ...)."""
    return AlignerBackendError(
        f"{server} sent a reply that is not a generation: {type(error).__name__}: {error}"
    )


def stream_cut_short(server: str) -> AlignerBackendError:
    """A stream that ended before its last event (the one with the finish reason)."""
    return AlignerBackendError(f"{server}'s stream ended before its last event (no finish reason)")
