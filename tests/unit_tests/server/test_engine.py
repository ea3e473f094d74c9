"""The dynamic-batching engine against transformers' own ``generate``, on a tiny random Llama."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import torch

from langchain_aligner.generation import GenerationParams
from langchain_aligner.models import load_model_and_tokenizer
from langchain_aligner.server.engine import (
    BatchingEngine,
    EngineGenerationError,
    EngineOverloaded,
    EngineRequest,
    EngineValidationError,
    TokenEvent,
)
from langchain_aligner.testing import random_llama
from tests.helpers.engine import PROMPTS, collect, hold_decoding, reference, started, wait_until_queued


@pytest.fixture(scope="module")
def tiny_bf16(tiny_llama_dir: Path) -> tuple[Any, Any]:
    """The tiny random Llama in bfloat16, the dtype ``serve`` picks on CPUs that compute it natively."""
    return load_model_and_tokenizer(tiny_llama_dir, dtype="bfloat16")


@pytest.fixture
async def engine(tiny: tuple[Any, Any]) -> AsyncIterator[BatchingEngine]:
    """A started engine on the tiny Llama."""
    async with BatchingEngine(*tiny, model_id="tiny", max_input_tokens=64, max_total_tokens=256) as running:
        yield running


def greedy(max_new_tokens: int, **kwargs: Any) -> EngineRequest:
    return EngineRequest(PROMPTS[0], GenerationParams(max_new_tokens=max_new_tokens, **kwargs))


@pytest.mark.parametrize(("weights", "dtype"), [("tiny", torch.float32), ("tiny_bf16", torch.bfloat16)])
async def test_greedy_batch_equals_single_generate_with_staggered_arrivals(
    weights: str, dtype: torch.dtype, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer = request.getfixturevalue(weights)
    assert model.dtype == dtype
    lengths = [30, 12, 20, 8]
    expected = [
        reference(model, tokenizer, p, do_sample=False, max_new_tokens=n)
        for p, n in zip(PROMPTS, lengths, strict=True)
    ]
    engine = BatchingEngine(model, tokenizer, model_id="tiny", max_input_tokens=64, max_total_tokens=256)
    gate = hold_decoding(model, monkeypatch)

    def run(index: int) -> Any:
        params = GenerationParams(max_new_tokens=lengths[index])
        return asyncio.ensure_future(engine.generate(EngineRequest(PROMPTS[index], params)))

    # The first two are prefilled together (left padding) before the engine's first decode step, which is
    # held until the other two have arrived: they are prefilled together and merged into the running batch.
    first = engine.stream(EngineRequest(PROMPTS[0], GenerationParams(max_new_tokens=lengths[0])))
    head = asyncio.ensure_future(anext(first))
    second = run(1)
    await wait_until_queued(engine, 2)
    async with started(engine, gate):
        events = [await head]
        third, fourth = run(2), run(3)
        await wait_until_queued(engine, 4)
        gate.set()
        rest, finish = await collect(first)
        results = [finish, *await asyncio.gather(second, third, fourth)]
        stats = engine.stats
    assert finish.tokens == events + rest
    assert [[t.id for t in r.tokens] for r in results] == expected
    assert [r.finish_reason for r in results] == ["length"] * 4
    assert [r.input_tokens for r in results] == [len(tokenizer(p)["input_ids"]) for p in PROMPTS]
    assert stats.prefills == 2
    assert stats.max_batch_size == 4
    assert stats.generated_tokens == sum(lengths)
    assert engine.in_flight == 0


async def test_requests_queued_together_share_every_decode_step(tiny: tuple[Any, Any]) -> None:
    engine = BatchingEngine(
        *tiny, model_id="tiny", max_batch_size=3, max_input_tokens=64, max_total_tokens=256
    )
    requests = [EngineRequest(p, GenerationParams(max_new_tokens=6)) for p in PROMPTS]
    tasks = [asyncio.ensure_future(engine.generate(r)) for r in requests]
    await wait_until_queued(engine, len(requests))
    async with engine:
        await asyncio.gather(*tasks)
    stats = engine.stats
    # Three rows at most; the fourth request waits for a free row, then decodes alone.
    assert stats.batch_sizes == {3: 5, 1: 5}
    assert stats.requests == stats.finished == 4


async def test_sampling_settings_match_generate(engine: BatchingEngine, tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    penalised = await engine.generate(greedy(12, repetition_penalty=1.5))
    assert [t.id for t in penalised.tokens] == reference(
        model, tokenizer, PROMPTS[0], do_sample=False, max_new_tokens=12, repetition_penalty=1.5
    )
    top_one = await engine.generate(greedy(12, do_sample=True, top_k=1, temperature=0.7, seed=3))
    assert [t.id for t in top_one.tokens] == reference(
        model, tokenizer, PROMPTS[0], do_sample=False, max_new_tokens=12
    )


async def test_seeded_sampling_is_reproducible_in_any_batch(engine: BatchingEngine) -> None:
    sampled = greedy(16, do_sample=True, temperature=1.5, seed=42)
    alone = await engine.generate(sampled)
    crowded = await asyncio.gather(
        engine.generate(sampled),
        *(engine.generate(EngineRequest(p, GenerationParams(max_new_tokens=16))) for p in PROMPTS),
    )
    other_seed = await engine.generate(greedy(16, do_sample=True, temperature=1.5, seed=7))
    assert alone.seed == 42
    assert [t.id for t in crowded[0].tokens] == [t.id for t in alone.tokens]
    assert [t.id for t in other_seed.tokens] != [t.id for t in alone.tokens]
    unseeded = await engine.generate(greedy(16, do_sample=True, temperature=1.5))
    assert unseeded.seed is not None
    replay = await engine.generate(greedy(16, do_sample=True, temperature=1.5, seed=unseeded.seed))
    assert [t.id for t in replay.tokens] == [t.id for t in unseeded.tokens]
    assert (await engine.generate(greedy(4))).seed is None


async def test_stop_sequence_ends_the_generation_where_it_completes(
    engine: BatchingEngine, tiny: tuple[Any, Any]
) -> None:
    model, tokenizer = tiny
    full = reference(model, tokenizer, PROMPTS[0], do_sample=False, max_new_tokens=40)
    texts = [tokenizer.decode(full[:n], skip_special_tokens=True) for n in range(len(full) + 1)]
    stop = texts[-1][len(texts[-1]) // 2 :][:3]
    # Token texts are released once they form whole characters, so the stop is seen at a clean text end.
    expected = next(n for n, text in enumerate(texts) if stop in text and not text.endswith("\ufffd"))
    result = await engine.generate(greedy(40, stop=("never appears", stop)))
    assert result.finish_reason == "stop_sequence"
    assert [t.last for t in result.tokens].index(True) == len(result.tokens) - 1
    assert [t.id for t in result.tokens] == full[:expected]
    assert result.generated_text == texts[expected]  # TGI keeps the stop sequence in the text


async def test_stream_yields_each_token_then_the_finish(
    engine: BatchingEngine, tiny: tuple[Any, Any]
) -> None:
    tokens, finish = await collect(engine.stream(greedy(5)))
    assert finish.finish_reason == "length"
    assert finish.generated_tokens == 5
    assert tokens == finish.tokens
    assert [t.last for t in tokens] == [False] * 4 + [True]
    assert finish.generated_text == tiny[1].decode([t.id for t in tokens], skip_special_tokens=True)
    assert finish.queue_ms >= 0 and finish.inference_ms > 0
    assert finish.prefill == []


async def test_details_give_prompt_and_top_token_logprobs(
    engine: BatchingEngine, tiny: tuple[Any, Any]
) -> None:
    model, tokenizer = tiny
    request = EngineRequest(
        PROMPTS[2], GenerationParams(max_new_tokens=4), decoder_input_details=True, top_n_tokens=3
    )
    result = await engine.generate(request)
    input_ids = tokenizer(PROMPTS[2], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(input_ids).logits[0].float(), dim=-1)
    expected = logprobs[:-1].gather(-1, input_ids[0, 1:, None])[:, 0]
    assert [t.id for t in result.prefill] == input_ids[0].tolist()
    assert math.isnan(result.prefill[0].logprob)
    assert [t.logprob for t in result.prefill[1:]] == pytest.approx(expected.tolist(), abs=1e-4)
    assert result.prefill[0].special and result.prefill[0].text == tokenizer.bos_token
    first = result.tokens[0]
    assert first.logprob == pytest.approx(float(logprobs[-1].max()), abs=1e-4)
    for token in result.tokens:
        assert len(token.top_tokens) == 3
        assert token.top_tokens[0].id == token.id  # greedy picks the most likely token
        assert [t.logprob for t in token.top_tokens] == sorted(
            (t.logprob for t in token.top_tokens), reverse=True
        )


async def test_invalid_requests_are_refused_before_any_event(engine: BatchingEngine) -> None:
    long_prompt = " ".join(["Edit"] * 100)
    cases = [
        EngineRequest(long_prompt, GenerationParams(max_new_tokens=1)),
        greedy(250),
        EngineRequest("", GenerationParams()),
        EngineRequest(PROMPTS[0], GenerationParams(), top_n_tokens=6),
        greedy(4, do_sample=True, temperature=1e-45),
        greedy(4, repetition_penalty=1e-40),
    ]
    messages = []
    for request in cases:
        with pytest.raises(EngineValidationError) as caught:
            await anext(aiter(engine.stream(request)))
        messages.append(str(caught.value))
    assert "must have less than 64 tokens. Given: at least" in messages[0]  # refused without tokenizing
    assert "must be <= 256" in messages[1]
    assert "cannot be empty" in messages[2]
    assert "top_n_tokens" in messages[3]
    # Scores are float32: settings that make them NaN are refused, not left to fail inside a shared batch.
    # (GenerationParams itself refuses NaN, infinity and seeds over 2**64 - 1.)
    assert "`temperature` must be a finite number >= 1.17549e-38" in messages[4]
    assert "`repetition_penalty` must be a finite number >= 1.17549e-38" in messages[5]
    assert engine.in_flight == 0 and engine.stats.requests == 0


async def test_without_max_new_tokens_the_engine_fills_what_fits(tiny: tuple[Any, Any]) -> None:
    async with BatchingEngine(*tiny, model_id="tiny", max_input_tokens=16, max_total_tokens=24) as engine:
        request = EngineRequest(PROMPTS[0], GenerationParams(max_new_tokens=1), default_max_new_tokens=True)
        finish = await engine.generate(request)
    assert finish.input_tokens + finish.generated_tokens == 24
    assert finish.finish_reason == "length"


def test_engine_refuses_settings_it_cannot_honour(tiny: tuple[Any, Any]) -> None:
    with pytest.raises(ValueError, match="256 positions"):
        BatchingEngine(*tiny, model_id="tiny")
    with pytest.raises(ValueError, match="max_input_tokens < max_total_tokens"):
        BatchingEngine(*tiny, model_id="tiny", max_input_tokens=64, max_total_tokens=64)
    with pytest.raises(ValueError, match="full attention in every layer"):
        BatchingEngine(
            random_llama(tiny[1], sliding_window=16),
            tiny[1],
            model_id="sliding",
            max_total_tokens=256,
            max_input_tokens=64,
        )


async def test_more_than_max_concurrent_requests_are_overloaded(tiny: tuple[Any, Any]) -> None:
    async with BatchingEngine(
        *tiny, model_id="tiny", max_concurrent_requests=1, max_input_tokens=64, max_total_tokens=256
    ) as engine:
        running = engine.stream(greedy(200))
        assert isinstance(await anext(running), TokenEvent)
        with pytest.raises(EngineOverloaded, match="overloaded"):
            await anext(aiter(engine.stream(greedy(4))))
        await running.aclose()
        assert engine.in_flight == 0
        assert (await engine.generate(greedy(4))).generated_tokens == 4
        assert engine.stats.rejected == 1


async def test_a_closed_stream_frees_its_row(tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    engine = BatchingEngine(
        *tiny, model_id="tiny", max_batch_size=1, max_input_tokens=64, max_total_tokens=256
    )
    gate = hold_decoding(engine.model, monkeypatch)
    async with started(engine, gate):
        abandoned = engine.stream(greedy(200))
        await anext(abandoned)  # prefilled; its first decode step is held
        await abandoned.aclose()
        gate.set()
        # With one row, this request can only run once the abandoned one has left the batch.
        after = await engine.generate(greedy(3))
        stats = engine.stats
    assert after.generated_tokens == 3
    assert stats.cancelled == 1 and stats.finished == 1
    # The closed stream's row is dropped before the next step: at most the held step gave it a token.
    assert stats.generated_tokens - 3 in (1, 2)


async def test_a_stream_closed_while_queued_never_runs(tiny: tuple[Any, Any]) -> None:
    engine = BatchingEngine(*tiny, model_id="tiny", max_input_tokens=64, max_total_tokens=256)
    queued = engine.stream(greedy(5))
    task = asyncio.ensure_future(anext(queued))
    await wait_until_queued(engine, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await queued.aclose()
    async with engine:
        await engine.generate(greedy(2))
    assert engine.stats.cancelled == 1 and engine.stats.generated_tokens == 2


async def test_a_model_failure_fails_its_requests_and_the_engine_recovers(
    engine: BatchingEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(engine.model, "forward", broken)
    results = await asyncio.gather(*(engine.generate(greedy(4)) for _ in range(2)), return_exceptions=True)
    assert all(isinstance(r, EngineGenerationError) and "out of memory" in str(r) for r in results)
    monkeypatch.undo()
    assert (await engine.generate(greedy(4))).generated_tokens == 4
    assert engine.stats.failed == 2 and engine.in_flight == 0


async def test_a_failed_decode_step_fails_the_whole_batch_and_the_engine_recovers(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = BatchingEngine(*tiny, model_id="tiny", max_input_tokens=64, max_total_tokens=256)
    gate = hold_decoding(engine.model, monkeypatch, error="device lost")
    running = [engine.stream(EngineRequest(p, GenerationParams(max_new_tokens=20))) for p in PROMPTS[:2]]
    heads = [asyncio.ensure_future(anext(stream)) for stream in running]
    await wait_until_queued(engine, 2)
    async with started(engine, gate):
        for head in heads:
            assert isinstance(await head, TokenEvent)
        gate.set()
        for stream in running:
            with pytest.raises(EngineGenerationError, match="device lost"):
                await collect(stream)
        monkeypatch.undo()
        assert (await engine.generate(greedy(4))).generated_tokens == 4
    assert engine.stats.failed == 2 and engine.in_flight == 0


async def test_stopping_fails_requests_decoding_and_waiting(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = BatchingEngine(
        *tiny, model_id="tiny", max_batch_size=1, max_input_tokens=64, max_total_tokens=256
    )
    gate = hold_decoding(engine.model, monkeypatch)
    async with started(engine, gate):
        decoding = engine.stream(greedy(100))
        await anext(decoding)  # in the batch's only row, its first decode step held
        waiting = asyncio.ensure_future(engine.generate(greedy(5)))
        await wait_until_queued(engine, 2)
        stopping = asyncio.ensure_future(engine.stop())
        await asyncio.sleep(0)  # stop() has begun: it waits for the worker, which ends after this step
        gate.set()
        await stopping
        with pytest.raises(EngineGenerationError, match="stopped"):
            await collect(decoding)
        with pytest.raises(EngineGenerationError, match="stopped"):
            await waiting
    assert engine.stats.failed == 2 and engine.in_flight == 0


async def test_a_prefill_takes_no_more_tokens_than_its_budget(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    length = len(tokenizer(PROMPTS[0])["input_ids"])
    engine = BatchingEngine(
        model,
        tokenizer,
        model_id="tiny",
        max_input_tokens=length,
        max_total_tokens=256,
        max_batch_prefill_tokens=2 * length,
    )
    tasks = [asyncio.ensure_future(engine.generate(greedy(4))) for _ in range(4)]
    await wait_until_queued(engine, 4)
    async with engine:
        results = await asyncio.gather(*tasks)
    # Two prompts per prefill: the second pair joins the first after one step and the four decode together.
    assert engine.stats.prefills == 2
    assert engine.stats.batch_sizes == {2: 2, 4: 2}
    expected = reference(model, tokenizer, PROMPTS[0], do_sample=False, max_new_tokens=4)
    assert all([t.id for t in r.tokens] == expected for r in results)
    with pytest.raises(ValueError, match="max_batch_prefill_tokens"):
        BatchingEngine(
            model,
            tokenizer,
            model_id="tiny",
            max_input_tokens=64,
            max_total_tokens=256,
            max_batch_prefill_tokens=32,
        )


async def test_tokenize_gives_ids_and_character_offsets(tiny: tuple[Any, Any]) -> None:
    engine = BatchingEngine(*tiny, model_id="tiny", max_input_tokens=64, max_total_tokens=256)
    text = "Edit the pair"
    tokens = await engine.tokenize(text)
    assert [t[0] for t in tokens] == tiny[1](text)["input_ids"]
    assert "".join(t[1] for t in tokens) == text
    assert all(text[start:stop] == piece for _, piece, start, stop in tokens)
    assert engine.count_tokens(text) == len(tokens)
