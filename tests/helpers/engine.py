"""Driving the batching engine in tests: prompts, the reference generation to compare with, collecting a
stream's events, and holding the model's decode steps to catch the engine mid-batch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import torch

from langchain_aligner.server.engine import BatchingEngine, FinishEvent, TokenEvent

PROMPTS = [
    "USER: Edit the following pair",
    "Edit",
    "ASSISTANT: make it more helpful and harmless. USER: Question-Answer",
    "helpful and harmless",
]


def reference(model: Any, tokenizer: Any, prompt: str, **kwargs: Any) -> list[int]:
    """Token ids of a single-request ``model.generate`` of ``prompt``."""
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(**inputs, pad_token_id=tokenizer.pad_token_id, **kwargs)
    return output[0, inputs["input_ids"].shape[1] :].tolist()


async def collect(stream: AsyncIterator[TokenEvent | FinishEvent]) -> tuple[list[TokenEvent], FinishEvent]:
    """The token events and the finish event of a stream."""
    events = [event async for event in stream]
    finish = events.pop()
    assert isinstance(finish, FinishEvent)
    assert all(isinstance(event, TokenEvent) for event in events)
    return events, finish  # type: ignore[return-value]


async def wait_until_queued(engine: BatchingEngine, count: int) -> None:
    """Let the event loop run until ``count`` requests are in flight (admitted) in ``engine``."""
    while engine.in_flight < count:
        await asyncio.sleep(0)


def hold_decoding(model: Any, monkeypatch: pytest.MonkeyPatch, error: str | None = None) -> threading.Event:
    """Make ``model``'s decode steps (one new token per row) wait until the returned event is set.

    With ``error``, a released decode step raises ``RuntimeError(error)`` instead of running. Prefills run.
    """
    forward, gate = model.forward, threading.Event()

    def held(**kwargs: Any) -> Any:
        if kwargs["input_ids"].shape[1] == 1:
            gate.wait()
            if error is not None:
                raise RuntimeError(error)
        return forward(**kwargs)

    monkeypatch.setattr(model, "forward", held)
    return gate


@asynccontextmanager
async def started(engine: BatchingEngine, gate: threading.Event) -> AsyncIterator[BatchingEngine]:
    """Run ``engine``, opening ``gate`` on the way out so that a failing test cannot leave the worker held."""
    async with engine:
        try:
            yield engine
        finally:
            gate.set()
