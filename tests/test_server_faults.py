"""The server under bad neighbours (issue 10): a poison request fails alone, abandoned requests free their
rows, a signal drains the server, oversized inputs neither stall others nor leak memory.

Everything runs on the tiny random Llama over real HTTP on 127.0.0.1. Progress and latency are compared as
orderings or ratios, never against wall-clock thresholds.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from langchain_aligner.generation import GenerationParams
from langchain_aligner.models import load_model_and_tokenizer
from langchain_aligner.server.engine import BatchingEngine, EngineGenerationError, EngineRequest
from tests.test_server_app import gated, serve_tiny
from tests.test_server_engine import PROMPTS, collect, hold_decoding, reference, started, wait_until_queued


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir: Path) -> tuple[Any, Any]:
    """The tiny random Llama of conftest, loaded once for this module."""
    return load_model_and_tokenizer(tiny_llama_dir)


def wait_until(condition: Callable[[], bool], what: str, bound_s: float = 120) -> None:
    """Poll until ``condition()`` holds; ``bound_s`` only keeps a broken server from hanging the suite."""
    deadline = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def post_and_stay(url: str, route: str, body: dict[str, Any]) -> socket.socket:
    """Send a POST request on a raw connection and return it unread: closing it is the client leaving."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    head = f"POST {route} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    connection = socket.create_connection((host, int(port)))
    connection.sendall(f"{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return connection


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


# -- isolation: a poison request fails only itself -----------------------------------------------------------


async def test_a_poison_temperature_is_refused_and_its_prefill_neighbours_finish(
    tiny_llama_dir: Path,
) -> None:
    gate = threading.Event()  # the worker is held in the first request's prefill while the others arrive
    with serve_tiny(tiny_llama_dir, wrap_forward=gated(gate)) as (url, engine):
        good = {"inputs": "Edit the", "parameters": {"max_new_tokens": 6}}
        poison = {"inputs": "Edit the", "parameters": {"temperature": 1e-45, "max_new_tokens": 6}}
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            first = asyncio.ensure_future(client.post("/generate", json=good))
            while engine.in_flight < 1:
                await asyncio.sleep(0.01)
            others = [asyncio.ensure_future(client.post("/generate", json=good)) for _ in range(5)]
            while engine.in_flight < 6:
                await asyncio.sleep(0.01)
            refused = asyncio.ensure_future(client.post("/generate", json=poison))
            while engine.in_flight < 7 and not refused.done():
                await asyncio.sleep(0.01)
            gate.set()  # the five and the poison (if it got in) are prefilled together
            answers = await asyncio.gather(first, *others)
            poisoned = await refused
    assert poisoned.status_code == 422
    assert poisoned.json()["error_type"] == "validation"
    assert "`temperature` must be a finite number >= 1.17549e-38" in poisoned.json()["error"]
    assert [a.status_code for a in answers] == [200] * 6
    assert len({a.json()["generated_text"] for a in answers}) == 1  # greedy: the same answer in any batch


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
    assert [
        [t.id for t in [first, *rest]] for first, (rest, _) in zip(firsts, finished, strict=True)
    ] == expected
    assert (stats.finished, stats.failed) == (3, 1)
    assert engine.in_flight == 0


# -- abandoned work: a client that leaves frees its row ------------------------------------------------------

CHAT = {"messages": [{"role": "user", "content": "Edit the"}]}


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/generate", {"inputs": "Edit the", "parameters": {"max_new_tokens": 100}}),
        ("/", {"inputs": "Edit the", "parameters": {"max_new_tokens": 100}}),
        ("/v1/completions", {"prompt": "Edit the", "max_tokens": 100}),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 100}),
    ],
)
def test_a_non_streaming_client_that_leaves_frees_its_row(
    tiny_llama_dir: Path, route: str, body: dict[str, Any]
) -> None:
    gate = threading.Event()  # the first prefill runs, then the model waits: nothing can finish by itself
    with serve_tiny(tiny_llama_dir, wrap_forward=gated(gate, free_calls=1), max_batch_size=2) as (
        url,
        engine,
    ):
        try:
            leaving = [post_and_stay(url, route, body) for _ in range(2)]
            wait_until(lambda: engine.in_flight == 2, "both requests admitted")
            for connection in leaving:
                connection.close()
            wait_until(
                lambda: engine.in_flight == 0, "the abandoned requests dropped while the model is held"
            )
        finally:
            gate.set()
        # With two rows, this one runs only once the abandoned requests have left the batch.
        after = httpx.post(
            f"{url}/generate", json={"inputs": "Edit", "parameters": {"max_new_tokens": 3}}, timeout=120
        )
        stats = engine.stats
    assert after.status_code == 200
    assert (stats.cancelled, stats.finished) == (2, 1)
