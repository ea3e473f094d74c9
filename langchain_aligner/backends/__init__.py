"""Aligner backends: TGI, OpenAI-compatible completions servers, and in-process transformers."""

from langchain_aligner.backends.base import AlignerBackend, Generation, GenerationDelta

__all__ = ["AlignerBackend", "Generation", "GenerationDelta"]
