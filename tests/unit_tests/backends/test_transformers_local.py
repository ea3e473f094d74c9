"""The in-process transformers backend with a tiny random Llama, checked against ``model.generate``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from langchain_aligner import ALIGNER_V1, AlignerRunnable, GenerationParams
from langchain_aligner.backends import TransformersBackend, make_backend
from langchain_aligner.models import load_model_and_tokenizer, preferred_dtype

PROMPT = ALIGNER_V1.format("How do I boil an egg?", "Put it in the microwave.")
PARAMS = GenerationParams(max_new_tokens=12)


@pytest.fixture(scope="module")
def backend(tiny_llama_dir: Path) -> TransformersBackend:
    built = make_backend("transformers", url=str(tiny_llama_dir))
    assert isinstance(built, TransformersBackend)
    return built


@pytest.fixture(scope="module")
def reference(tiny_llama_dir: Path) -> tuple[str, int, int]:
    """Greedy text, prompt length and new-token count straight from ``model.generate``, in the dtype the
    backend picks by default."""
    model, tokenizer = load_model_and_tokenizer(tiny_llama_dir, dtype=preferred_dtype("cpu"))
    inputs = tokenizer(PROMPT, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new = output[0, inputs["input_ids"].shape[1] :]
    return tokenizer.decode(new, skip_special_tokens=True), inputs["input_ids"].shape[1], len(new)


def test_greedy_generate_matches_model_generate(
    backend: TransformersBackend, reference: tuple[str, int, int]
) -> None:
    text, prompt_tokens, new_tokens = reference
    generation = backend.generate(PROMPT, PARAMS)
    assert generation.text == text
    assert generation.prompt_tokens == prompt_tokens == backend.count_tokens(PROMPT)
    assert generation.completion_tokens == new_tokens


def test_stream_adds_up_to_the_same_text(
    backend: TransformersBackend, reference: tuple[str, int, int]
) -> None:
    deltas = list(backend.stream(PROMPT, PARAMS))
    assert "".join(d.text for d in deltas) == reference[0]
    assert deltas[-1].generation is not None and deltas[-1].generation.text == reference[0]


async def test_concurrent_async_calls_do_not_interleave(
    backend: TransformersBackend, reference: tuple[str, int, int]
) -> None:
    results = await asyncio.gather(*(backend.agenerate(PROMPT, PARAMS) for _ in range(3)))
    assert [r.text for r in results] == [reference[0]] * 3
    streamed = [d.text async for d in backend.astream(PROMPT, PARAMS)]
    assert "".join(streamed) == reference[0]


def test_stop_sequence_cuts_the_text(backend: TransformersBackend, reference: tuple[str, int, int]) -> None:
    text = reference[0]
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    if not stop.strip():
        pytest.skip("the random model's output has no usable stop sequence")
    expected = text[: text.index(stop)]
    assert backend.generate(PROMPT, GenerationParams(max_new_tokens=12, stop=(stop,))).text == expected
    assert (
        "".join(d.text for d in backend.stream(PROMPT, GenerationParams(max_new_tokens=12, stop=(stop,))))
        == expected
    )


def test_dtype_defaults_to_the_preferred_one_and_can_be_given(
    backend: TransformersBackend, tiny_llama_dir: Path
) -> None:
    import torch

    model, _ = backend.load()
    assert backend.dtype == preferred_dtype("cpu")
    assert model.dtype == getattr(torch, backend.dtype)
    given = TransformersBackend(tiny_llama_dir, dtype="float16")
    assert given.dtype == "float16" and given.load()[0].dtype == torch.float16


def test_limits_come_from_the_model(backend: TransformersBackend) -> None:
    # The model's context holds the prompt and the new tokens: the prompt gets what max_new_tokens leaves.
    assert (backend.max_input_tokens(), backend.max_total_tokens()) == (None, 256)
    assert backend.prompt_limit(16) == 240


def test_runnable_with_the_in_process_backend(
    backend: TransformersBackend, reference: tuple[str, int, int]
) -> None:
    aligner = AlignerRunnable(backend=backend, generation=PARAMS)
    result = aligner.invoke({"question": "How do I boil an egg?", "answer": "Put it in the microwave."})
    assert result.content == reference[0]
    assert result.response_metadata["aligner_backend"] == "transformers"
