"""One wire protocol per API, the same at both ends: the library's HTTP backends against the real server app.

Each backend (TGI through huggingface_hub's ``InferenceClient``, OpenAI-compatible through ``openai``) talks
over real HTTP to the server app running a tiny random Llama, whose engine is wrapped to record what the app
asked it and what it answered. Every test compares the two ends of the wire:

- ``GenerationParams`` -> the client's request body -> the server's schema -> the same ``GenerationParams``;
- the engine's result -> the response body or stream events -> the client's ``Generation`` (same text, token
  counts and finish reason);
- an error the engine raises -> the server's error body and status -> ``AlignerBackendError`` with that
  status, error type and message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import ValidationError

from langchain_aligner import AlignerBackendError, GenerationParams
from langchain_aligner.backends import AlignerBackend, Generation, OpenAICompatBackend, TGIBackend
from langchain_aligner.backends._stops import cut_at_stop
from langchain_aligner.server.engine import (
    BatchingEngine,
    EngineGenerationError,
    EngineOverloaded,
    EngineRequest,
    EngineUnavailable,
    EngineValidationError,
    FinishEvent,
    TokenEvent,
)
from tests.helpers.serving import CHAT_TEMPLATE, serve_tiny

PROMPT = "Edit the following Question-Answer pair"

ROUND_TRIPS = {
    "greedy": GenerationParams(max_new_tokens=6),
    "greedy, penalty, stops, seed": GenerationParams(
        max_new_tokens=5, repetition_penalty=1.3, stop=("ing", "\n"), seed=7
    ),
    "sampling at its defaults": GenerationParams(max_new_tokens=6, do_sample=True, seed=2**64 - 1),
    "sampling, every setting": GenerationParams(
        max_new_tokens=6,
        do_sample=True,
        temperature=0.7,
        top_p=0.9,
        top_k=20,
        repetition_penalty=0.9,
        seed=3,
        stop=("a", "b", "c", "d"),
    ),
}
"""Settings that must reach the engine unchanged, each a ``GenerationParams`` the library accepts."""


@dataclass
class Recorded:
    """What the app asked the engine (``requests``) and what the engine answered (``finishes``)."""

    url: str
    requests: list[EngineRequest] = field(default_factory=list)
    finishes: list[FinishEvent] = field(default_factory=list)


@pytest.fixture(scope="module")
def served(printable_llama_dir: Path) -> Iterator[tuple[str, BatchingEngine]]:
    with serve_tiny(printable_llama_dir, chat_template=CHAT_TEMPLATE) as served:
        yield served


@pytest.fixture
def recorded(served: tuple[str, BatchingEngine], monkeypatch: pytest.MonkeyPatch) -> Recorded:
    """The module's server, its engine's requests and results recorded for this test (``generate`` runs
    through ``stream``)."""
    url, engine = served
    record = Recorded(url)
    stream = engine.stream

    async def recording_stream(request: EngineRequest) -> AsyncIterator[TokenEvent | FinishEvent]:
        record.requests.append(request)
        async with aclosing(stream(request)) as events:
            async for event in events:
                if isinstance(event, FinishEvent):
                    record.finishes.append(event)
                yield event

    monkeypatch.setattr(engine, "stream", recording_stream)
    return record


def make(kind: str, url: str) -> AlignerBackend:
    return TGIBackend(url, timeout=30) if kind == "tgi" else OpenAICompatBackend(url, timeout=30)


async def every_call(backend: AlignerBackend, params: GenerationParams) -> list[tuple[str, Generation]]:
    """The finished generation of generate, agenerate, stream and astream; a stream's pieces add up to it."""
    results = [("generate", backend.generate(PROMPT, params))]
    results.append(("agenerate", await backend.agenerate(PROMPT, params)))
    for call, deltas in [
        ("stream", list(backend.stream(PROMPT, params))),
        ("astream", [d async for d in backend.astream(PROMPT, params)]),
    ]:
        finished = deltas[-1].generation
        assert finished is not None and all(d.generation is None for d in deltas[:-1])
        assert "".join(d.text for d in deltas) == finished.text, call
        results.append((call, finished))
    return results


# -- parameters and results ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tgi", "openai"])
@pytest.mark.parametrize("params", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
async def test_params_reach_the_server_and_results_come_back_unchanged(
    recorded: Recorded, kind: str, params: GenerationParams
) -> None:
    results = await every_call(make(kind, recorded.url), params)
    assert [r.params for r in recorded.requests] == [params] * 4
    assert len(recorded.finishes) == 4
    for (call, generation), finish in zip(results, recorded.finishes, strict=True):
        assert generation.text == cut_at_stop(finish.generated_text, params.stop), call
        assert (generation.prompt_tokens, generation.completion_tokens) == (
            finish.input_tokens,
            finish.generated_tokens,
        ), call
        openai_reason = "length" if finish.finish_reason == "length" else "stop"
        assert generation.finish_reason == (finish.finish_reason if kind == "tgi" else openai_reason), call
        assert generation.model == "tiny-llama", call


def test_openai_chat_requests_carry_the_same_params(recorded: Recorded) -> None:
    """The chat route reads the sampling fields as the completions route does."""
    from langchain_aligner.wire.openai_compat import SamplingFields

    client = openai.OpenAI(base_url=f"{recorded.url}/v1", api_key="unused", max_retries=0)
    for params in ROUND_TRIPS.values():
        client.chat.completions.create(
            model="tiny-llama",
            messages=[{"role": "user", "content": PROMPT}],
            **SamplingFields.of(params).arguments(),
        )
    assert [r.params for r in recorded.requests] == list(ROUND_TRIPS.values())


@pytest.mark.parametrize(
    ("settings", "refused"),
    [({"seed": 2**64}, "seed"), ({"stop": ["1", "2", "3", "4", "5"]}, "stop")],
)
@pytest.mark.parametrize("kind", ["tgi", "openai"])
def test_what_the_server_refuses_is_refused_before_sending(
    recorded: Recorded, kind: str, settings: dict[str, Any], refused: str
) -> None:
    """Settings the server answers with 422 cannot be written as ``GenerationParams`` (they were accepted,
    then every correction failed)."""
    with pytest.raises(ValidationError, match=refused):
        GenerationParams(max_new_tokens=4, do_sample=True, **settings)
    body: dict[str, Any] = {"prompt": PROMPT, "temperature": 1.0, **settings}
    if kind == "tgi":
        body = {"inputs": PROMPT, "parameters": {"do_sample": True, **settings}}
    route = "/generate" if kind == "tgi" else "/v1/completions"
    answer = httpx.post(f"{recorded.url}{route}", json=body)
    assert answer.status_code == 422 and refused in answer.json()["error"]
    assert recorded.requests == []


# -- errors ------------------------------------------------------------------------------------------------

ENGINE_ERRORS: dict[str, tuple[Callable[[], Exception], int]] = {
    "validation": (lambda: EngineValidationError("Input validation error: refused on purpose"), 422),
    "generation": (lambda: EngineGenerationError("failed on purpose"), 424),
    "overloaded": (lambda: EngineOverloaded("Model is overloaded on purpose"), 429),
    "unavailable": (lambda: EngineUnavailable("Server is shutting down on purpose"), 503),
    "internal": (lambda: RuntimeError("a bug on purpose"), 500),
}
"""An engine failure of each kind, and the status TGI's error table gives its ``error_type``."""


def failing_engine(
    engine: BatchingEngine, monkeypatch: pytest.MonkeyPatch, error: Callable[[], Exception], tokens: int
) -> None:
    """Make the engine fail every request with ``error()`` after ``tokens`` streamed tokens."""

    async def generate(request: EngineRequest) -> FinishEvent:
        raise error()

    async def stream(request: EngineRequest) -> AsyncIterator[TokenEvent | FinishEvent]:
        for i in range(tokens):
            yield TokenEvent(id=100 + i, text=f" t{i}", logprob=-0.5, special=False)
        raise error()

    monkeypatch.setattr(engine, "generate", generate)
    monkeypatch.setattr(engine, "stream", stream)


async def raised(backend: AlignerBackend, call: str) -> AlignerBackendError:
    params = GenerationParams(max_new_tokens=4)
    with pytest.raises(AlignerBackendError) as caught:
        if call == "generate":
            backend.generate(PROMPT, params)
        elif call == "agenerate":
            await backend.agenerate(PROMPT, params)
        elif call == "stream":
            list(backend.stream(PROMPT, params))
        else:
            [d async for d in backend.astream(PROMPT, params)]
    return caught.value


@pytest.mark.parametrize("kind", ["tgi", "openai"])
@pytest.mark.parametrize("call", ["generate", "agenerate", "stream", "astream"])
@pytest.mark.parametrize("error_type", ENGINE_ERRORS)
async def test_error_bodies_keep_their_status_type_and_message(
    served: tuple[str, BatchingEngine],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    call: str,
    error_type: str,
) -> None:
    """An error before the first token: the server's status and body, read back by the client."""
    url, engine = served
    error, status = ENGINE_ERRORS[error_type]
    failing_engine(engine, monkeypatch, error, tokens=0)
    caught = await raised(make(kind, url), call)
    assert (caught.status, caught.error_type) == (status, error_type)
    assert caught.retryable == (status == 429 or status >= 500)
    assert ("on purpose" in str(caught)) == (error_type != "internal")  # a bug's text stays in the log


@pytest.mark.parametrize("call", ["stream", "astream"])
@pytest.mark.parametrize("error_type", ["generation", "overloaded", "validation"])
async def test_tgi_error_events_in_a_stream_keep_their_type(
    served: tuple[str, BatchingEngine], monkeypatch: pytest.MonkeyPatch, call: str, error_type: str
) -> None:
    """TGI's own error types, sent as the last event of a started stream, map back to their status."""
    url, engine = served
    error, status = ENGINE_ERRORS[error_type]
    failing_engine(engine, monkeypatch, error, tokens=2)
    caught = await raised(make("tgi", url), call)
    assert (caught.status, caught.error_type) == (status, error_type)
    assert "on purpose" in str(caught)


@pytest.mark.parametrize("call", ["stream", "astream"])
async def test_openai_error_events_in_a_stream_keep_their_message(
    served: tuple[str, BatchingEngine], monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    url, engine = served
    failing_engine(engine, monkeypatch, ENGINE_ERRORS["generation"][0], tokens=2)
    caught = await raised(make("openai", url), call)
    assert "failed on purpose" in str(caught)
