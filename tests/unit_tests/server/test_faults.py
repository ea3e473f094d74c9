"""A poison request fails alone in the engine: a request whose sampling fails, at any stage, takes no other
request down."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from langchain_aligner.generation import GenerationParams
from langchain_aligner.server.engine import BatchingEngine, EngineGenerationError, EngineRequest, TokenEvent
from tests.helpers.engine import PROMPTS, collect, hold_decoding, reference, started, wait_until_queued


def nan_scores_in_last_row(
    model: Any, monkeypatch: pytest.MonkeyPatch, when: Callable[[Any], bool]
) -> threading.Event:
    """Make the first forward pass whose ``input_ids`` satisfy ``when`` give NaN scores in its last row, as
    a row whose numbers overflow would; the returned event is set once that happened."""
    forward, poisoned = model.forward, threading.Event()

    def poisoning(**kwargs: Any) -> Any:
        output = forward(**kwargs)
        if not poisoned.is_set() and when(kwargs["input_ids"]):
            output.logits[-1] = float("nan")
            poisoned.set()
        return output

    monkeypatch.setattr(model, "forward", poisoning)
    return poisoned


@pytest.mark.parametrize("stage", ["prefill", "decode"])
async def test_a_request_whose_sampling_fails_fails_alone(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    model, tokenizer = tiny
    expected = [reference(model, tokenizer, p, do_sample=False, max_new_tokens=8) for p in PROMPTS[:3]]
    engine = BatchingEngine(model, tokenizer, model_id="tiny", max_input_tokens=64, max_total_tokens=256)
    if stage == "prefill":  # the bad request is the last row of the prefill it shares with three good ones
        poisoned = nan_scores_in_last_row(model, monkeypatch, lambda ids: ids.shape[0] == 4)
    else:  # it joins three good rows that decode, and fails in a decode step all four share
        poisoned = nan_scores_in_last_row(model, monkeypatch, lambda ids: tuple(ids.shape) == (4, 1))
    gate = hold_decoding(model, monkeypatch)
    good = [engine.stream(EngineRequest(p, GenerationParams(max_new_tokens=8))) for p in PROMPTS[:3]]
    heads = [asyncio.ensure_future(anext(stream)) for stream in good]
    bad_request = EngineRequest(PROMPTS[3], GenerationParams(max_new_tokens=8, do_sample=True, seed=1))
    await wait_until_queued(engine, 3)
    if stage == "prefill":
        bad = asyncio.ensure_future(engine.generate(bad_request))
        await wait_until_queued(engine, 4)
    async with started(engine, gate):
        firsts = [await head for head in heads]
        if stage == "decode":  # the three decode (their first step held) when the bad one arrives
            bad = asyncio.ensure_future(engine.generate(bad_request))
            await wait_until_queued(engine, 4)
        gate.set()
        finished = [await collect(stream) for stream in good]
        with pytest.raises(EngineGenerationError, match="probability tensor"):
            await bad
        stats = engine.stats
    assert poisoned.is_set()
    first_tokens = [first for first in firsts if isinstance(first, TokenEvent)]
    assert first_tokens == firsts  # every good stream began with a token
    assert [
        [t.id for t in [first, *rest]] for first, (rest, _) in zip(first_tokens, finished, strict=True)
    ] == expected
    assert (stats.finished, stats.failed) == (3, 1)
    assert engine.in_flight == 0
