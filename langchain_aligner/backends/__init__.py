"""Aligner backends: TGI, OpenAI-compatible completions servers, and in-process transformers.

Backends are imported lazily by :func:`make_backend`, so using one does not import the others' clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from langchain_aligner.backends.base import AlignerBackend, Generation, GenerationDelta

if TYPE_CHECKING:
    from langchain_aligner.backends.openai_compat import OpenAICompatBackend
    from langchain_aligner.backends.tgi import TGIBackend
    from langchain_aligner.backends.transformers_local import TransformersBackend

__all__ = [
    "AlignerBackend",
    "BackendKind",
    "Generation",
    "GenerationDelta",
    "OpenAICompatBackend",
    "TGIBackend",
    "TransformersBackend",
    "make_backend",
]

BackendKind = Literal["tgi", "openai", "transformers"]

_CLASSES = {
    "TGIBackend": "langchain_aligner.backends.tgi",
    "OpenAICompatBackend": "langchain_aligner.backends.openai_compat",
    "TransformersBackend": "langchain_aligner.backends.transformers_local",
}


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        import importlib

        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_backend(
    kind: BackendKind,
    *,
    url: str | None = None,
    model: str | None = None,
    timeout: float | None = 60.0,
    api_key: str | None = None,
    headers: dict[str, str] | None = None,
) -> AlignerBackend:
    """Build a backend from plain settings.

    Args:
        kind: ``"tgi"`` (``url`` required), ``"openai"`` (``url`` required: the server root or its ``/v1``),
            or ``"transformers"`` (``url`` is a local model path, ``None`` for the embedded default).
        model: Model name: sent to OpenAI servers, reported in metadata by all.
        timeout: Seconds to wait for an HTTP backend.
        api_key: Bearer token for HTTP backends.
        headers: Extra HTTP headers for HTTP backends.
    """
    if kind == "transformers":
        from langchain_aligner.backends.transformers_local import TransformersBackend

        return TransformersBackend(url, model=model)
    if kind not in ("tgi", "openai"):
        raise ValueError(f"unknown backend kind {kind!r}; expected 'tgi', 'openai' or 'transformers'")
    if not url:
        raise ValueError(f"the {kind!r} backend needs a url, e.g. http://127.0.0.1:8080")
    if kind == "tgi":
        from langchain_aligner.backends.tgi import TGIBackend

        return TGIBackend(url, model=model, timeout=timeout, api_key=api_key, headers=headers)
    from langchain_aligner.backends.openai_compat import OpenAICompatBackend

    return OpenAICompatBackend(url, model=model, timeout=timeout, api_key=api_key, headers=headers)
