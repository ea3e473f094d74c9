"""langchain-aligner: Aligner correction as a first-class part of LangChain apps."""

from langchain_aligner.errors import AlignerBackendError, AlignerError, AlignerInputError, AlignerTimeoutError
from langchain_aligner.generation import GenerationParams
from langchain_aligner.runnable import AlignerRunnable
from langchain_aligner.templates import ALIGNER_V1, TEMPLATES, AlignerTemplate, get_template
from langchain_aligner.wrap import AlignedChatModel, with_aligner

__all__ = [
    "AlignedChatModel",
    "ALIGNER_V1",
    "TEMPLATES",
    "AlignerBackendError",
    "AlignerError",
    "AlignerInputError",
    "AlignerRunnable",
    "AlignerTemplate",
    "AlignerTimeoutError",
    "GenerationParams",
    "get_template",
    "with_aligner",
]
