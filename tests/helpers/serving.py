"""The project's server app on 127.0.0.1 with the tiny Llama behind it, hooks into its forward pass (to hold
or fail generation on purpose), and readers of what it answers (Server-Sent Events, Prometheus metrics)."""

from __future__ import annotations

import functools
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from langchain_aligner.models import load_model_and_tokenizer
from langchain_aligner.server.app import DEFAULT_REQUEST_BODY_TIMEOUT, create_app
from langchain_aligner.server.background import run_server_in_thread
from langchain_aligner.server.engine import BatchingEngine

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
"""A chat template for the tiny model, which has none; it starts with BOS, as most templates do."""


@contextmanager
def serve_tiny(
    model_dir: Path,
    *,
    wrap_forward: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
    chat_template: str | None = CHAT_TEMPLATE,
    api_key: str | None = None,
    max_request_bytes: int = 1 << 20,
    request_body_timeout: float = DEFAULT_REQUEST_BODY_TIMEOUT,
    **engine_kwargs: Any,
) -> Iterator[tuple[str, BatchingEngine]]:
    """Serve the tiny model on 127.0.0.1 (64 input / 128 total tokens unless told); yield URL and engine.

    ``wrap_forward`` replaces the model's ``forward`` (to hold or fail generation on purpose).
    """
    model, tokenizer = load_model_and_tokenizer(model_dir)
    tokenizer.chat_template = chat_template
    if wrap_forward is not None:
        model.forward = wrap_forward(model.forward)
    limits = {"max_input_tokens": 64, "max_total_tokens": 128, **engine_kwargs}
    engine = BatchingEngine(model, tokenizer, model_id="tiny-llama", **limits)
    app = create_app(
        engine,
        api_key=api_key,
        max_request_bytes=max_request_bytes,
        request_body_timeout=request_body_timeout,
    )
    with run_server_in_thread(app) as url:
        yield url, engine


def before_forward(hook: Callable[[int], None]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A ``wrap_forward`` that calls ``hook(n)`` before the model's n-th forward pass (the prefill is 1)."""

    def wrap(forward: Callable[..., Any]) -> Callable[..., Any]:
        calls = itertools.count(1)

        @functools.wraps(forward)
        def hooked(*args: Any, **kwargs: Any) -> Any:
            hook(next(calls))
            return forward(*args, **kwargs)

        return hooked

    return wrap


def failing_after(calls: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A ``wrap_forward`` whose forward pass raises from call ``calls + 1`` on."""

    def fail(call: int) -> None:
        if call > calls:
            raise RuntimeError("injected failure")

    return before_forward(fail)


def gated(gate: threading.Event, free_calls: int = 0) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A ``wrap_forward`` whose forward passes after the first ``free_calls`` wait until ``gate`` is set."""

    def wait(call: int) -> None:
        if call > free_calls:
            gate.wait()

    return before_forward(wait)


def sse_events(response: httpx.Response) -> list[Any]:
    """The ``data:`` payloads of a Server-Sent Events body, JSON-decoded (``[DONE]`` kept as a string)."""
    payloads = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
    return [p if p == "[DONE]" else json.loads(p) for p in payloads]


def metric_values(url: str) -> dict[str, float]:
    """``/metrics`` as ``{"name{label=value}": value}``."""
    values = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values
