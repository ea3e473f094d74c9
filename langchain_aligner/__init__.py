"""langchain-aligner: Aligner correction as a first-class part of LangChain apps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_aligner.chat_model import ChatAligner
from langchain_aligner.errors import (
    AlignerBackendError,
    AlignerCorrectionError,
    AlignerError,
    AlignerInputError,
    AlignerTimeoutError,
)
from langchain_aligner.generation import GenerationParams
from langchain_aligner.runnable import AlignerRunnable
from langchain_aligner.templates import ALIGNER_V1, TEMPLATES, AlignerTemplate, get_template
from langchain_aligner.wrap import AlignedChatModel, with_aligner

if TYPE_CHECKING:
    from langchain_aligner.middleware import AlignerMiddleware

__all__ = [
    "AlignedChatModel",
    "ALIGNER_V1",
    "TEMPLATES",
    "AlignerBackendError",
    "AlignerCorrectionError",
    "AlignerError",
    "AlignerInputError",
    "AlignerMiddleware",
    "AlignerRunnable",
    "AlignerTemplate",
    "AlignerTimeoutError",
    "ChatAligner",
    "GenerationParams",
    "get_template",
    "with_aligner",
]


def __getattr__(name: str) -> Any:
    # The middleware needs the `langchain` package (the `agents` extra); import it only when asked for.
    if name == "AlignerMiddleware":
        from langchain_aligner.middleware import AlignerMiddleware

        return AlignerMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
