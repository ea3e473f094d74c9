"""The standalone TGI-compatible server: a dynamic-batching engine and a FastAPI app on top of it.

The names below are imported on first use: the app needs the ``serve`` extra (FastAPI, uvicorn,
sse-starlette, prometheus-client), and ``langchain-aligner --help`` should not pay for importing it.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BatchingEngine", "EngineRequest", "create_app", "run_server_in_thread"]

_MODULES = {
    "BatchingEngine": "langchain_aligner.server.engine",
    "EngineRequest": "langchain_aligner.server.engine",
    "create_app": "langchain_aligner.server.app",
    "run_server_in_thread": "langchain_aligner.server.background",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULES[name]), name)
