"""langchain-aligner: Aligner correction as a first-class part of LangChain apps."""

from langchain_aligner.errors import AlignerBackendError, AlignerError, AlignerInputError, AlignerTimeoutError
from langchain_aligner.generation import GenerationParams
from langchain_aligner.runnable import AlignerRunnable
from langchain_aligner.templates import ALIGNER_V1, TEMPLATES, AlignerTemplate, get_template

__all__ = [
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
]
