"""The dynamic-batching engine on the embedded SmolLM2 (converted from its GGUF) against transformers' own
``generate``."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from langchain_aligner.generation import GenerationParams
from langchain_aligner.models import default_model_dir, load_model_and_tokenizer
from langchain_aligner.server.engine import BatchingEngine, EngineRequest
from tests.helpers.engine import collect, hold_decoding, started, wait_until_queued


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def smollm2(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """The embedded default model (SmolLM2-135M-Instruct), in float32 and in bfloat16."""
    yield load_model_and_tokenizer(default_model_dir(), dtype=request.param)


def bf16_spacing(value: float) -> float:
    """The gap between neighbouring bfloat16 numbers around ``value`` (8 significant bits)."""
    return 2.0 ** (math.floor(math.log2(abs(value))) - 7)


@pytest.mark.slow
async def test_greedy_batch_equals_single_generate_on_smollm2(
    smollm2: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """float32: the same tokens. bfloat16: a batch rounds differently from a single request, so where the
    best logits tie within bf16's rounding the pick may differ (transformers' own batched ``generate`` does
    the same); the outputs must agree up to such a tie."""
    model, tokenizer = smollm2
    prompts = ["The capital of France is", "List three colors:", "def fibonacci(n):", "Hi"]
    references = []
    for prompt in prompts:
        inputs = tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                pad_token_id=tokenizer.pad_token_id,
                do_sample=False,
                max_new_tokens=16,
                output_logits=True,
                return_dict_in_generate=True,
            )
        ids = output.sequences[0, inputs["input_ids"].shape[1] :].tolist()
        references.append((ids, [step[0].float() for step in output.logits]))
    engine = BatchingEngine(model, tokenizer, model_id="smollm2")
    gate = hold_decoding(model, monkeypatch)

    def run(prompt: str) -> Any:
        return asyncio.ensure_future(
            collect(engine.stream(EngineRequest(prompt, GenerationParams(max_new_tokens=16))))
        )

    # Three prompts prefilled together; the fourth joins the running batch after its first step.
    first = [run(p) for p in prompts[:3]]
    await wait_until_queued(engine, 3)
    async with started(engine, gate):
        while engine.stats.prefills == 0:
            await asyncio.sleep(0.01)
        last = run(prompts[3])
        await wait_until_queued(engine, 4)
        gate.set()
        streams = await asyncio.gather(*first, last)
        stats = engine.stats
    assert stats.prefills == 2 and stats.max_batch_size == 4, stats
    for (tokens, finish), (expected, logits) in zip(streams, references, strict=True):
        ids = [t.id for t in tokens]
        differ = next((i for i, (a, b) in enumerate(zip(ids, expected, strict=False)) if a != b), None)
        if differ is None:
            assert ids == expected
        else:
            assert model.dtype == torch.bfloat16, (ids, expected)
            step = logits[differ]
            best = float(step[expected[differ]])
            assert best - float(step[ids[differ]]) <= 2 * bf16_spacing(best), (differ, ids, expected)
        ended_by_eos = ids[-1] == tokenizer.eos_token_id and len(ids) < 16
        assert finish.finish_reason == ("eos_token" if ended_by_eos else "length")
        assert [t.last for t in tokens] == [False] * (len(tokens) - 1) + [True]
        # Incremental detokenization of byte-level pieces adds up to the decoded text.
        assert "".join(t.text for t in tokens if not t.special) == finish.generated_text
        assert finish.generated_text == tokenizer.decode(ids, skip_special_tokens=True)
