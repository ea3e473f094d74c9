"""In-process transformers backend: the embedded default Aligner, or any local model directory / GGUF file."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_aligner.backends._stops import StopTrimmer, cut_at_stop
from langchain_aligner.backends.base import AlignerBackend, Generation, GenerationDelta
from langchain_aligner.errors import AlignerBackendError
from langchain_aligner.generation import GenerationParams
from langchain_aligner.models import load_model_and_tokenizer, preferred_dtype

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["TransformersBackend"]

_DONE = object()


class TransformersBackend(AlignerBackend):
    """Generates with a causal LM loaded in this process (loaded on first use).

    One lock serialises generations on the model, so concurrent calls (threads, ``asyncio.to_thread``) queue
    up instead of interleaving. Streaming runs ``generate`` in a worker thread with a
    ``TextIteratorStreamer``; a stream closed early stops the generation at the next token.

    Args:
        path: A model directory or ``.gguf`` file; ``None`` for the embedded default Aligner.
        model: Name reported in metadata (default: the directory or file name).
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``; ``None`` picks
            :func:`~langchain_aligner.models.preferred_dtype` (bfloat16 where ``device`` computes it
            natively, e.g. CPUs with ``avx512_bf16``; else float32).
        device: Torch device.
    """

    name = "transformers"

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        model: str | None = None,
        dtype: str | None = None,
        device: str = "cpu",
    ) -> None:
        self.path = Path(path) if path is not None else None
        self._model_name = model or (self.path.name if self.path is not None else "aligner-default")
        self.dtype = dtype or preferred_dtype(device)
        self._device = device
        self._loaded: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._model_name

    def load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """The model and tokenizer, loaded once."""
        with self._load_lock:
            if self._loaded is None:
                self._loaded = load_model_and_tokenizer(self.path, dtype=self.dtype, device=self._device)
            return self._loaded

    def max_total_tokens(self) -> int | None:
        """The model's context length (``max_position_embeddings``): prompt and new tokens together."""
        model, _ = self.load()
        return getattr(model.config, "max_position_embeddings", None)

    def count_tokens(self, text: str) -> int | None:
        _, tokenizer = self.load()
        return len(tokenizer(text)["input_ids"])

    def generate(self, prompt: str, params: GenerationParams) -> Generation:
        model, tokenizer = self.load()
        inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
        with self._generate_lock:
            output = self._run(model, tokenizer, params, inputs)
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        text = str(tokenizer.decode(new_tokens, skip_special_tokens=True))
        kept = cut_at_stop(text, params.stop)
        return self._generation(kept, inputs, len(new_tokens), params, stopped=kept != text)

    async def agenerate(self, prompt: str, params: GenerationParams) -> Generation:
        return await asyncio.to_thread(self.generate, prompt, params)

    def stream(self, prompt: str, params: GenerationParams) -> Generator[GenerationDelta, None, None]:
        from transformers import TextIteratorStreamer

        model, tokenizer = self.load()
        inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled = threading.Event()
        result: dict[str, Any] = {}

        def work() -> None:
            with self._generate_lock:
                try:
                    result["output"] = self._run(model, tokenizer, params, inputs, streamer, cancelled)
                except Exception as error:  # surfaced in the consumer's thread below
                    result["error"] = error
                    streamer.end()

        worker = threading.Thread(target=work, name="aligner-generate", daemon=True)
        worker.start()
        trimmer, parts = StopTrimmer(params.stop), []
        try:
            for text in streamer:
                piece = trimmer.feed(text)
                if piece:
                    parts.append(piece)
                    yield GenerationDelta(piece)
                if trimmer.stopped:
                    break
        finally:
            cancelled.set()
            worker.join()
        if "error" in result:
            raise _backend_error(result["error"])
        tail = trimmer.flush()
        new_tokens = result["output"].shape[1] - inputs["input_ids"].shape[1]
        text = "".join(parts) + tail
        finished = self._generation(text, inputs, new_tokens, params, stopped=trimmer.stopped)
        yield GenerationDelta(tail, generation=finished)

    async def astream(self, prompt: str, params: GenerationParams) -> AsyncIterator[GenerationDelta]:
        deltas = self.stream(prompt, params)
        try:
            while (delta := await asyncio.to_thread(next, deltas, _DONE)) is not _DONE:
                yield delta  # type: ignore[misc]
        finally:
            await asyncio.to_thread(deltas.close)

    def _run(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        params: GenerationParams,
        inputs: Any,
        streamer: Any = None,
        cancelled: threading.Event | None = None,
    ) -> Any:
        from transformers import StoppingCriteria, StoppingCriteriaList, set_seed

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancelled is not None and cancelled.is_set()

        if params.seed is not None:
            set_seed(params.seed)
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": params.do_sample,
            "pad_token_id": tokenizer.pad_token_id,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([Cancelled()]),
        }
        if params.do_sample:
            kwargs.update(
                temperature=params.temperature or 1.0, top_p=params.top_p or 1.0, top_k=params.top_k or 0
            )
        else:  # neutralise sampling defaults a model's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.repetition_penalty is not None:
            kwargs["repetition_penalty"] = params.repetition_penalty
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=tokenizer)
        try:
            import torch

            generate: Any = model.generate
            with torch.inference_mode():
                return generate(**inputs, **kwargs)
        except Exception as error:
            raise _backend_error(error) from error

    def _generation(
        self, text: str, inputs: Any, new_tokens: int, params: GenerationParams, *, stopped: bool
    ) -> Generation:
        if stopped:
            finish = "stop_sequence"
        elif new_tokens >= params.max_new_tokens:
            finish = "length"
        else:
            finish = "eos_token"
        return Generation(
            text=text,
            prompt_tokens=int(inputs["input_ids"].shape[1]),
            completion_tokens=int(new_tokens),
            finish_reason=finish,
            model=self._model_name,
        )


def _backend_error(error: BaseException) -> AlignerBackendError:
    if isinstance(error, AlignerBackendError):
        return error
    return AlignerBackendError(f"in-process generation failed: {type(error).__name__}: {error}")
