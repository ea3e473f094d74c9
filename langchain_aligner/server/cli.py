"""``langchain-aligner serve``: load a model and serve it over TGI's HTTP API with uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from pathlib import Path

__all__ = ["API_KEY_ENV", "add_arguments", "run"]

API_KEY_ENV = "ALIGNER_API_KEY"  # the same variable AlignerRunnable sends as its bearer token
"""Environment variable read for the API key when ``--api-key`` is not given."""

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options to ``parser``."""
    from langchain_aligner.server.app import DEFAULT_MAX_REQUEST_BYTES
    from langchain_aligner.server.shutdown import DEFAULT_GRACEFUL_TIMEOUT

    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="Model directory or .gguf file (default: the embedded default Aligner).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default: 127.0.0.1).")
    parser.add_argument("--port", type=int, default=8080, help="Port to listen on (default: 8080).")
    parser.add_argument(
        "--max-batch-size", type=int, default=16, help="Most requests decoded together (default: 16)."
    )
    parser.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=128,
        help="Requests in flight before new ones get 429 (default: 128).",
    )
    parser.add_argument(
        "--max-input-tokens", type=int, default=1024, help="Longest prompt in tokens (default: 1024)."
    )
    parser.add_argument(
        "--max-total-tokens",
        type=int,
        default=2048,
        help="Most prompt plus generated tokens per request (default: 2048).",
    )
    parser.add_argument(
        "--max-batch-prefill-tokens",
        type=int,
        default=4096,
        help="Most prompt tokens (padding included) prefilled in one step (default: 4096).",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default=None,
        help="Weights' dtype (default: bfloat16 where the device computes it natively, e.g. a CPU with "
        "avx512_bf16; else float32).",
    )
    parser.add_argument("--device", default="cpu", help="Torch device (default: cpu).")
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"Require 'Authorization: Bearer KEY' on every route but /health (default: ${API_KEY_ENV}).",
    )
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help=f"Largest request body; larger ones get 413 (default: {DEFAULT_MAX_REQUEST_BYTES}).",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=DEFAULT_GRACEFUL_TIMEOUT,
        help="On SIGTERM/SIGINT, seconds the requests in flight get to finish while new ones get 503; then "
        f"they end with an error and the server exits (default: {DEFAULT_GRACEFUL_TIMEOUT:g}).",
    )


def run(args: argparse.Namespace) -> int:
    """Load the model, build the app and serve it until interrupted."""
    import uvicorn

    from langchain_aligner.models import default_model_dir, load_model_and_tokenizer, preferred_dtype
    from langchain_aligner.server.app import create_app
    from langchain_aligner.server.engine import BatchingEngine
    from langchain_aligner.server.shutdown import LAST_WRITES_TIMEOUT, DrainingServer

    path = args.model if args.model is not None else default_model_dir()
    dtype = args.dtype or preferred_dtype(args.device)
    logger.info("loading %s (%s on %s)", path, dtype, args.device)
    model, tokenizer = load_model_and_tokenizer(path, dtype=dtype, device=args.device)
    try:
        engine = BatchingEngine(
            model,
            tokenizer,
            model_id=str(path),
            max_batch_size=args.max_batch_size,
            max_concurrent_requests=args.max_concurrent_requests,
            max_input_tokens=args.max_input_tokens,
            max_total_tokens=args.max_total_tokens,
            max_batch_prefill_tokens=args.max_batch_prefill_tokens,
        )
    except ValueError as error:  # limits that do not fit the model, a model that cannot be batched
        logger.error("cannot serve %s: %s", path, error)
        return 2
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    app = create_app(engine, api_key=api_key, max_request_bytes=args.max_request_bytes)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=logging.getLogger().level,
        timeout_graceful_shutdown=LAST_WRITES_TIMEOUT,
    )
    with contextlib.suppress(KeyboardInterrupt):  # SIGINT is re-raised once the server is down
        DrainingServer(config, engine, args.graceful_timeout).run()
    return 0
