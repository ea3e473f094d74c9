"""The dynamic-batching generation engine behind the standalone TGI-compatible server.

Concurrent requests are decoded together: one batched forward pass per step over a shared KV cache, not one
request after another. The design, in brief:

- One worker thread runs the torch loop, so the event loop stays free; it hands events back to each
  request's loop with ``loop.call_soon_threadsafe``.
- **Continuous batching.** Between two decode steps the worker takes the requests that have arrived (up to
  ``max_batch_size`` rows in all and ``max_batch_prefill_tokens`` padded prompt tokens in one prefill),
  prefills them together (left padding, attention mask, position ids counted from each row's first real
  token) and merges their KV cache into the running batch by left-padding the shorter cache. Every step then
  feeds each row's last token. Rows that finish (EOS, stop sequence, ``max_new_tokens``) or whose stream was
  closed leave the batch before the next step, and the cache columns that only padding still uses are dropped.
- Per-request decoding: greedy, or sampling with transformers' logits processors (repetition penalty,
  temperature, top-k, top-p) and a per-request seeded ``torch.Generator``, so a seeded request gives the same
  tokens whatever else shares its batch. Greedy output equals a single-request ``model.generate``.
- TGI semantics: stop sequences are checked on the generated text and stay in ``generated_text`` (TGI
  returns them; clients cut them), the EOS token is the last token of its request but not part of the text,
  and token texts come from ``tokenizers``' incremental ``DecodeStream`` (correct for multi-byte and
  sentencepiece pieces: a token that ends inside a character has the text ``""``).
- Isolation: settings the float32 scores cannot take are refused at admission; a row whose token cannot be
  chosen (NaN scores) fails its own request only; a forward pass that raises fails the requests it ran.
- Graceful shutdown: :meth:`BatchingEngine.drain` stops admitting requests, lets those in flight finish for a
  while, then fails the rest.
- Only models whose KV cache is transformers' plain ``DynamicCache`` (full attention in every layer) can be
  batched this way; others are refused when the engine is built.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from langchain_aligner.backends._stops import cut_at_stop
from langchain_aligner.errors import AlignerError
from langchain_aligner.generation import GenerationParams
from langchain_aligner.wire.tgi import MAX_TOP_N_TOKENS

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "BatchingEngine",
    "EngineGenerationError",
    "EngineOverloaded",
    "EngineRequest",
    "EngineStats",
    "EngineUnavailable",
    "EngineValidationError",
    "FinishEvent",
    "TokenEvent",
]

FinishReason = Literal["length", "eos_token", "stop_sequence"]


@dataclass(frozen=True)
class EngineRequest:
    """One generation request.

    ``prompt`` is tokenized by the engine with the tokenizer's special tokens (TGI's ``/generate`` adds BOS
    itself). ``decoder_input_details`` also returns the prompt tokens with their log-probabilities;
    ``top_n_tokens`` returns that many most likely alternatives for every generated token.
    ``default_max_new_tokens`` means the client gave no ``max_new_tokens``: the engine then generates up to
    what fits in ``max_total_tokens`` after the prompt (at least 1, TGI's default), not
    ``params.max_new_tokens``.
    """

    prompt: str
    params: GenerationParams
    decoder_input_details: bool = False
    top_n_tokens: int = 0
    default_max_new_tokens: bool = False


@dataclass(frozen=True)
class TokenEvent:
    """One token: a generated token, a prompt token (``prefill``) or an alternative (``top_tokens``).

    ``logprob`` is NaN for the first prompt token, which has no prediction (TGI sends ``null``). ``last``
    marks the generated token that ends its request: the :class:`FinishEvent` comes next (a TGI stream
    sends both in one event).
    """

    id: int
    text: str
    logprob: float
    special: bool
    top_tokens: tuple[TokenEvent, ...] = ()
    last: bool = False


@dataclass(frozen=True)
class FinishEvent:
    """The last event of every request: the whole generation and its details."""

    generated_text: str
    finish_reason: FinishReason
    generated_tokens: int
    input_tokens: int
    seed: int | None
    prefill: list[TokenEvent]
    tokens: list[TokenEvent]
    queue_ms: float
    inference_ms: float


@dataclass(frozen=True)
class EngineStats:
    """Counters since the engine was built, for ``/metrics``.

    ``requests`` were accepted; each then ends ``finished``, ``cancelled`` (its stream closed early) or
    ``failed``; ``rejected`` ones were refused as overload. ``prefills`` and ``decode_steps`` count forward
    passes; ``batch_sizes`` maps a batch size to the number of decode steps run with that many rows.
    """

    requests: int = 0
    finished: int = 0
    cancelled: int = 0
    failed: int = 0
    rejected: int = 0
    input_tokens: int = 0
    generated_tokens: int = 0
    prefills: int = 0
    decode_steps: int = 0
    max_batch_size: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)


class EngineOverloaded(AlignerError):
    """More than ``max_concurrent_requests`` requests in flight (HTTP 429, ``error_type`` ``overloaded``)."""


class EngineValidationError(AlignerError, ValueError):
    """The request cannot be served: prompt too long, too many tokens asked (HTTP 422, ``validation``)."""


class EngineGenerationError(AlignerError, RuntimeError):
    """The model failed while generating, or the engine stopped (HTTP 424, ``error_type`` ``generation``)."""


class EngineUnavailable(AlignerError):
    """The engine takes no new requests: it is draining before the server shuts down (HTTP 503)."""


_SMALLEST_NORMAL_FLOAT32 = 1.1754943508222875e-38
"""``torch.finfo(torch.float32).tiny``: dividing float32 scores by anything smaller can overflow."""

_Event = TokenEvent | FinishEvent | BaseException


class _Sequence:
    """A request inside the engine: its tokens, decoding state and the way back to its event loop."""

    def __init__(self, device: Any, req: EngineRequest, input_ids: list[int], seed: int | None) -> None:
        import torch
        from tokenizers.decoders import DecodeStream
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        params = req.params
        self.request = req
        self.input_ids = input_ids
        self.ids = list(input_ids)
        self.seed = seed
        self.generator: torch.Generator | None = None
        if seed is not None:  # sampling
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(seed)
        processors = LogitsProcessorList()
        if params.repetition_penalty is not None and params.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
        if params.do_sample:
            if params.temperature is not None and params.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(params.temperature))
            if params.top_k:
                processors.append(TopKLogitsWarper(params.top_k))
            if params.top_p is not None:
                processors.append(TopPLogitsWarper(params.top_p))
        self.processors = processors
        self.decoder = DecodeStream(ids=input_ids, skip_special_tokens=False)
        self.text = ""
        self.tokens: list[TokenEvent] = []
        self.prefill: list[TokenEvent] = []
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[_Event] = asyncio.Queue()
        self.cancelled = threading.Event()
        self.done = False
        self.submitted = time.perf_counter()
        self.started = self.submitted

    @property
    def last_id(self) -> int:
        return self.ids[-1]

    def send(self, event: _Event) -> None:
        """Hand ``event`` to the request's event loop (from the worker thread)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled.set()


class BatchingEngine:
    """Serves generation requests from many clients with one model, decoding them together.

    Use it as an async context manager (or call :meth:`start` / :meth:`stop`); requests made before the
    engine starts wait in its queue. :meth:`stream` yields a :class:`TokenEvent` per generated token and a
    :class:`FinishEvent` at the end; :meth:`generate` returns only the latter.

    Args:
        model: A causal LM whose KV cache is a plain ``DynamicCache`` (Llama, Mistral, Qwen2, ...).
        tokenizer: Its fast tokenizer.
        model_id: The name reported by ``/info``.
        max_batch_size: Most requests decoded together; more wait for a free row.
        max_concurrent_requests: Most requests in flight (waiting or decoding); more are refused.
        max_input_tokens: Most prompt tokens per request.
        max_total_tokens: Most prompt plus new tokens per request.
        max_batch_prefill_tokens: Most tokens (padding included) prefilled in one forward pass; newcomers
            beyond it join at the next step (TGI's ``--max-batch-prefill-tokens``).
        batch_wait_ms: How long an idle engine waits for more requests before starting a batch.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        model_id: str,
        max_batch_size: int = 16,
        max_concurrent_requests: int = 128,
        max_input_tokens: int = 1024,
        max_total_tokens: int = 2048,
        max_batch_prefill_tokens: int = 4096,
        batch_wait_ms: float = 2.0,
    ) -> None:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("the batching engine needs a fast tokenizer (tokenizer.json)")
        if max_batch_size < 1 or max_concurrent_requests < 1:
            raise ValueError("max_batch_size and max_concurrent_requests must be >= 1")
        if not 0 < max_input_tokens < max_total_tokens:
            raise ValueError("need 0 < max_input_tokens < max_total_tokens")
        if max_batch_prefill_tokens < max_input_tokens:
            raise ValueError("max_batch_prefill_tokens must be >= max_input_tokens")
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions is not None and max_total_tokens > positions:
            raise ValueError(
                f"max_total_tokens={max_total_tokens} exceeds the model's {positions} positions; "
                f"pass max_total_tokens <= {positions}"
            )
        layers = DynamicCache(config=model.config).layers
        if not all(type(layer) is DynamicLayer for layer in layers):
            raise ValueError(
                "the batching engine needs full attention in every layer (a plain DynamicCache); "
                f"{type(model).__name__} uses {sorted({type(layer).__name__ for layer in layers})}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.max_batch_size = max_batch_size
        self.max_concurrent_requests = max_concurrent_requests
        self.max_input_tokens = max_input_tokens
        self.max_total_tokens = max_total_tokens
        self.max_batch_prefill_tokens = max_batch_prefill_tokens
        self.batch_wait_ms = batch_wait_ms
        self.device = model.device
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_token_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))
        self._special_ids = frozenset(tokenizer.all_special_ids)
        # Left padding is masked out, so any id will do when the tokenizer names no pad token.
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._keep_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._waiting: queue.Queue[_Sequence | None] = queue.Queue()
        self._live: set[_Sequence] = set()  # admitted, stream still open (event-loop side)
        self._tokenizing = 0  # past the overload check, prompt being tokenized
        self._max_token_bytes = _max_bytes_per_token(tokenizer)
        self._accepting = True
        self._idle: asyncio.Event | None = None  # set when the last live request ends, while draining
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()
        # Worker-thread state: the running batch, its KV cache and its attention mask (batch x cache length).
        self._batch: list[_Sequence] = []
        self._deferred: _Sequence | None = None  # taken from the queue, but did not fit in the last prefill
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._stats_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._batch_sizes: Counter[int] = Counter()

    # -- public API ------------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests accepted whose stream is still open (waiting or decoding)."""
        return len(self._live)

    @property
    def accepting(self) -> bool:
        """Whether new requests are admitted: false from :meth:`drain` until the engine starts again."""
        return self._accepting

    @property
    def stats(self) -> EngineStats:
        """A snapshot of the engine's counters."""
        with self._stats_lock:
            sizes = dict(self._batch_sizes)
            return EngineStats(**self._counts, max_batch_size=max(sizes, default=0), batch_sizes=sizes)

    async def start(self) -> None:
        """Start the worker thread (once)."""
        self._accepting = True
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="aligner-engine", daemon=True)
            self._worker.start()

    async def stop(self) -> None:
        """Stop the worker after its current step; requests in flight fail with EngineGenerationError."""
        if self._worker is not None:
            self._stopping.set()
            self._waiting.put(None)  # wakes a worker that waits for requests
            await asyncio.to_thread(self._worker.join)
            self._worker = None
            self._stopping.clear()
        self._fail(self._drain_waiting(), EngineGenerationError("the engine stopped"))

    async def drain(self, timeout: float) -> None:
        """Shut down gracefully: stop admitting requests (:class:`EngineUnavailable`), let those in flight
        finish for up to ``timeout`` seconds, then fail the rest with :class:`EngineGenerationError` (a stream
        gets it as its next event) and stop."""
        self._accepting = False
        self._idle = asyncio.Event()
        if self._live:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        unfinished = EngineGenerationError(
            f"the server shut down before the request finished (graceful timeout: {timeout:g} s)"
        )
        for sequence in list(self._live):  # now, not after the worker's current step
            sequence.send(unfinished)
        await self.stop()

    async def __aenter__(self) -> BatchingEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stream(self, request: EngineRequest) -> AsyncGenerator[TokenEvent | FinishEvent, None]:
        """Yield the generated tokens, then a :class:`FinishEvent`.

        Raises :class:`EngineValidationError` or :class:`EngineOverloaded` at the first iteration, before
        any event. Closing the stream early frees the request's row in the batch.
        """
        sequence = await self._admit(request)
        try:
            while True:
                event = await sequence.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, FinishEvent):
                    return
        finally:
            sequence.cancelled.set()
            self._live.discard(sequence)
            if not self._live and self._idle is not None:
                self._idle.set()

    async def generate(self, request: EngineRequest) -> FinishEvent:
        """Generate the whole answer and return its :class:`FinishEvent`."""
        async with aclosing(self.stream(request)) as events:
            async for event in events:
                if isinstance(event, FinishEvent):
                    return event
        raise EngineGenerationError("the generation ended without a result")  # pragma: no cover

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text``, special tokens included, as the engine would tokenize a prompt."""
        return len(self.tokenizer(text)["input_ids"])

    async def tokenize(self, text: str) -> list[tuple[int, str, int, int]]:
        """``(id, text, start, stop)`` of every token of ``text``; offsets are character positions.

        Tokenizes in a worker thread: a long text does not hold up the event loop."""
        encoding = await asyncio.to_thread(self.tokenizer, text, return_offsets_mapping=True)
        return [
            (int(i), text[start:stop], int(start), int(stop))
            for i, (start, stop) in zip(encoding["input_ids"], encoding["offset_mapping"], strict=True)
        ]

    # -- admission (event-loop thread) -----------------------------------------------------------------------

    async def _admit(self, request: EngineRequest) -> _Sequence:
        """Check ``request`` and queue it. TGI's order: the checks that need no tokens, the overload limit,
        then the prompt is tokenized once, in a worker thread, and its length checked."""
        self._check_accepting()
        self._check_before_tokenizing(request)
        if len(self._live) + self._tokenizing >= self.max_concurrent_requests:
            self._count(rejected=1)
            raise EngineOverloaded(
                f"Model is overloaded: more than {self.max_concurrent_requests} requests in flight"
            )
        self._tokenizing += 1
        try:
            input_ids = await asyncio.to_thread(self._encode, request.prompt)
        finally:
            self._tokenizing -= 1
        self._check_accepting()
        request = self._fit(request, input_ids)
        params = request.params
        seed = None
        if params.do_sample:  # TGI reports the seed it sampled with, drawn when none was given
            seed = params.seed if params.seed is not None else random.getrandbits(63)
        sequence = _Sequence(self.device, request, input_ids, seed)
        self._live.add(sequence)
        self._count(requests=1, input_tokens=len(input_ids))
        self._waiting.put(sequence)
        return sequence

    def _check_accepting(self) -> None:
        if not self._accepting:
            raise EngineUnavailable("Server is shutting down: no new requests are accepted")

    def _check_before_tokenizing(self, request: EngineRequest) -> None:
        """The checks that need no tokens, including a prompt too long for any tokenization of it."""
        if not request.prompt:
            raise EngineValidationError("Input validation error: `inputs` cannot be empty")
        if not 0 <= request.top_n_tokens <= MAX_TOP_N_TOKENS:
            raise EngineValidationError(
                f"Input validation error: `top_n_tokens` must be >= 0 and <= {MAX_TOP_N_TOKENS}. "
                f"Given: {request.top_n_tokens}"
            )
        _validate_sampling(request.params)
        # Every character is at least one byte, and one token covers at most _max_token_bytes bytes.
        if self._max_token_bytes and len(request.prompt) > self.max_input_tokens * self._max_token_bytes:
            fewest = -(-len(request.prompt) // self._max_token_bytes)
            raise EngineValidationError(
                f"Input validation error: `inputs` must have less than {self.max_input_tokens} tokens. "
                f"Given: at least {fewest}"
            )

    def _encode(self, prompt: str) -> list[int]:
        """The prompt's token ids (special tokens included); runs in a worker thread."""
        return [int(i) for i in self.tokenizer(prompt)["input_ids"]]

    def _fit(self, request: EngineRequest, input_ids: list[int]) -> EngineRequest:
        """Check the prompt's length and its room for new tokens; resolve ``default_max_new_tokens``."""
        if len(input_ids) > self.max_input_tokens:
            raise EngineValidationError(
                f"Input validation error: `inputs` must have less than {self.max_input_tokens} tokens. "
                f"Given: {len(input_ids)}"
            )
        if request.default_max_new_tokens:
            fitting = max(1, self.max_total_tokens - len(input_ids))
            params = request.params.model_copy(update={"max_new_tokens": fitting})
            return replace(request, params=params, default_max_new_tokens=False)
        new_tokens = request.params.max_new_tokens
        if len(input_ids) + new_tokens > self.max_total_tokens:
            raise EngineValidationError(
                f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                f"{self.max_total_tokens}. Given: {len(input_ids)} `inputs` tokens and {new_tokens} "
                "`max_new_tokens`"
            )
        return request

    # -- the worker thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while not self._stopping.is_set() and (newcomers := self._take_newcomers()) is not None:
                try:
                    self._step(newcomers)
                except Exception as error:  # the batch's state is unknown now: fail it whole
                    self._fail(newcomers + self._batch, _generation_error(error))
                    self._reset_batch()
        deferred = [self._deferred] if self._deferred is not None else []
        self._fail(self._batch + deferred, EngineGenerationError("the engine stopped"))
        self._reset_batch()
        self._deferred = None

    def _step(self, newcomers: list[_Sequence]) -> None:
        """Prefill the newcomers into the batch, then decode one token for every row."""
        if newcomers:
            try:
                self._prefill(newcomers)
            except Exception as error:  # the running batch is untouched: only the newcomers fail
                self._fail(newcomers, _generation_error(error))
        self._drop_finished()
        if self._batch:
            self._decode_step()
            self._drop_finished()

    def _take_newcomers(self) -> list[_Sequence] | None:
        """Waiting requests that fit in the batch and in one prefill; blocks while idle.

        The first request always fits; one that would take the padded prefill over
        ``max_batch_prefill_tokens`` waits for the next step. ``None`` when the engine stops.
        """
        room = self.max_batch_size - len(self._batch)
        newcomers: list[_Sequence] = []
        longest = 0
        deadline: float | None = None
        while len(newcomers) < room:
            item: _Sequence | None
            if self._deferred is not None:
                item, self._deferred = self._deferred, None
            else:
                try:
                    if not self._batch and not newcomers:
                        item = self._waiting.get()
                        deadline = time.perf_counter() + self.batch_wait_ms / 1000
                    elif deadline is not None:
                        item = self._waiting.get(timeout=max(0.0, deadline - time.perf_counter()))
                    else:
                        item = self._waiting.get_nowait()
                except queue.Empty:
                    break
            if item is None:
                self._fail(newcomers, EngineGenerationError("the engine stopped"))
                return None
            if item.cancelled.is_set():
                self._count(cancelled=1)
                continue
            padded = max(longest, len(item.input_ids)) * (len(newcomers) + 1)
            if newcomers and padded > self.max_batch_prefill_tokens:
                self._deferred = item
                break
            newcomers.append(item)
            longest = max(longest, len(item.input_ids))
        return newcomers

    def _prefill(self, newcomers: list[_Sequence]) -> None:
        import torch
        from transformers import DynamicCache

        now = time.perf_counter()
        for sequence in newcomers:
            sequence.started = now
        length = max(len(s.input_ids) for s in newcomers)
        rows = [[self._pad_id] * (length - len(s.input_ids)) + s.input_ids for s in newcomers]
        masks = [[0] * (length - len(s.input_ids)) + [1] * len(s.input_ids) for s in newcomers]
        input_ids = torch.tensor(rows, device=self.device)
        mask = torch.tensor(masks, device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        details = any(s.request.decoder_input_details for s in newcomers)
        kwargs: dict[str, Any] = {"logits_to_keep": 0 if details else 1} if self._keep_logits else {}
        cache = DynamicCache(config=self.model.config)
        output = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            **kwargs,
        )
        logits = output.logits.float()
        self._count(prefills=1)
        self._merge(newcomers, output.past_key_values, mask)
        for row, sequence in enumerate(newcomers):
            with self._failing_alone(sequence):
                if sequence.request.decoder_input_details:
                    sequence.prefill = self._prefill_tokens(
                        sequence, logits[row, length - len(sequence.input_ids) :]
                    )
                self._append(sequence, logits[row, -1])

    def _decode_step(self) -> None:
        import torch

        assert self._mask is not None
        batch = self._batch
        input_ids = torch.tensor([[s.last_id] for s in batch], device=self.device)
        positions = self._mask.sum(-1, keepdim=True)
        mask = torch.cat([self._mask, self._mask.new_ones((len(batch), 1))], dim=-1)
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if self._keep_logits else {}
        output = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=self._cache,
            use_cache=True,
            **kwargs,
        )
        self._cache, self._mask = output.past_key_values, mask
        self._count(decode_steps=1)
        with self._stats_lock:
            self._batch_sizes[len(batch)] += 1
        logits = output.logits[:, -1].float()
        for row, sequence in enumerate(batch):
            with self._failing_alone(sequence):
                self._append(sequence, logits[row])

    @contextmanager
    def _failing_alone(self, sequence: _Sequence) -> Iterator[None]:
        """Fail only ``sequence`` when choosing its token fails (its settings or its scores are bad): the
        other rows of the batch go on, and the finished-row sweep drops this one."""
        try:
            yield
        except Exception as error:
            self._fail([sequence], _generation_error(error))

    def _merge(self, newcomers: list[_Sequence], cache: Any, mask: torch.Tensor) -> None:
        """Add the prefilled rows to the running batch, left-padding the shorter KV cache."""
        import torch
        from torch.nn.functional import pad
        from transformers import DynamicCache

        if not self._batch:
            self._batch, self._cache, self._mask = list(newcomers), cache, mask
            return
        assert self._mask is not None
        length = max(mask.shape[-1], self._mask.shape[-1])

        def left_pad(tensor: torch.Tensor, dim_from_end: int) -> torch.Tensor:
            missing = length - tensor.shape[-dim_from_end]
            return pad(tensor, (0, 0) * (dim_from_end - 1) + (missing, 0)) if missing else tensor

        layers = [
            tuple(
                torch.cat([left_pad(old, 2), left_pad(new, 2)])
                for old, new in ((a.keys, b.keys), (a.values, b.values))
            )
            for a, b in zip(self._cache.layers, cache.layers, strict=True)
        ]
        merged_mask = torch.cat([left_pad(self._mask, 1), left_pad(mask, 1)])
        self._cache = DynamicCache(ddp_cache_data=layers, config=self.model.config)
        self._mask = merged_mask
        self._batch = self._batch + list(newcomers)

    def _append(self, sequence: _Sequence, logits: torch.Tensor) -> None:
        """Choose the next token of ``sequence`` from its ``logits``, send it, finish if it is the last."""
        import torch

        scores = logits.unsqueeze(0)
        if sequence.processors:
            ids = torch.tensor([sequence.ids], device=logits.device)
            scores = sequence.processors(ids, scores)  # type: ignore[arg-type]
        logprobs = torch.log_softmax(scores, dim=-1)[0]
        if sequence.generator is not None:
            probs = torch.softmax(scores, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=sequence.generator)[0, 0])
        else:
            token = int(torch.argmax(scores[0]))
        sequence.ids.append(token)
        special = token in self._special_ids
        text = sequence.decoder.step(self.tokenizer.backend_tokenizer, token) or ""
        if not special:
            sequence.text += text
        reason = self._finish_reason(sequence, token, text)
        top: tuple[TokenEvent, ...] = ()
        if sequence.request.top_n_tokens:
            values, indices = torch.topk(logprobs, sequence.request.top_n_tokens)
            top = tuple(self._token(int(i), float(v)) for v, i in zip(values, indices, strict=True))
        event = TokenEvent(
            id=token,
            text=text,
            logprob=float(logprobs[token]),
            special=special,
            top_tokens=top,
            last=reason is not None,
        )
        sequence.tokens.append(event)
        self._count(generated_tokens=1)
        sequence.send(event)
        if reason is not None:
            self._finish(sequence, reason)

    def _finish_reason(self, sequence: _Sequence, token: int, text: str) -> FinishReason | None:
        """TGI's order: length, then EOS, then stop sequences (searched where ``text`` can complete one)."""
        params = sequence.request.params
        if len(sequence.ids) - len(sequence.input_ids) >= params.max_new_tokens:
            return "length"
        if token in self.eos_token_ids:
            return "eos_token"
        if params.stop and text:
            window = len(text) + max(len(s) for s in params.stop)
            tail = sequence.text[-window:]
            if cut_at_stop(tail, params.stop) != tail:
                return "stop_sequence"
        return None

    def _finish(self, sequence: _Sequence, reason: FinishReason) -> None:
        now = time.perf_counter()
        generated = sequence.ids[len(sequence.input_ids) :]
        sequence.done = True
        self._count(finished=1)
        sequence.send(
            FinishEvent(
                generated_text=str(self.tokenizer.decode(generated, skip_special_tokens=True)),
                finish_reason=reason,
                generated_tokens=len(generated),
                input_tokens=len(sequence.input_ids),
                seed=sequence.seed,
                prefill=sequence.prefill,
                tokens=sequence.tokens,
                queue_ms=(sequence.started - sequence.submitted) * 1000,
                inference_ms=(now - sequence.started) * 1000,
            )
        )

    def _drop_finished(self) -> None:
        """Remove finished and cancelled rows from the batch and the cache columns only padding uses."""
        import torch

        keep = [row for row, s in enumerate(self._batch) if not s.done and not s.cancelled.is_set()]
        if len(keep) == len(self._batch):
            return
        self._count(cancelled=sum(1 for s in self._batch if not s.done and s.cancelled.is_set()))
        if not keep:
            self._reset_batch()
            return
        assert self._mask is not None
        self._batch = [self._batch[row] for row in keep]
        index = torch.tensor(keep, device=self.device)
        self._cache.batch_select_indices(index)
        mask = self._mask[index]
        first = int(mask.any(dim=0).nonzero()[0])
        if first:
            for layer in self._cache.layers:
                layer.keys, layer.values = layer.keys[..., first:, :], layer.values[..., first:, :]
            mask = mask[:, first:]
        self._mask = mask

    def _reset_batch(self) -> None:
        self._batch, self._cache, self._mask = [], None, None

    def _prefill_tokens(self, sequence: _Sequence, logits: torch.Tensor) -> list[TokenEvent]:
        """The prompt tokens with the log-probability the model gave each (NaN for the first)."""
        import torch

        ids = sequence.input_ids
        logprobs = [math.nan]
        if len(ids) > 1:
            targets = torch.tensor(ids[1:], device=logits.device)
            logprobs += torch.log_softmax(logits[:-1], dim=-1).gather(-1, targets[:, None])[:, 0].tolist()
        return [self._token(i, lp) for i, lp in zip(ids, logprobs, strict=True)]

    def _token(self, token: int, logprob: float) -> TokenEvent:
        text = str(self.tokenizer.decode([token], skip_special_tokens=False))
        return TokenEvent(id=token, text=text, logprob=logprob, special=token in self._special_ids)

    # -- shared helpers --------------------------------------------------------------------------------------

    def _fail(self, sequences: list[_Sequence], error: BaseException) -> None:
        for sequence in sequences:
            if not sequence.done:
                sequence.done = True
                sequence.send(error)
                self._count(failed=1)

    def _drain_waiting(self) -> list[_Sequence]:
        drained: list[_Sequence] = []
        while True:
            try:
                item = self._waiting.get_nowait()
            except queue.Empty:
                return drained
            if item is not None:
                drained.append(item)

    def _count(self, **increments: int) -> None:
        with self._stats_lock:
            self._counts.update(increments)


def _generation_error(error: Exception) -> EngineGenerationError:
    failed = EngineGenerationError(f"generation failed: {type(error).__name__}: {error}")
    failed.__cause__ = error
    return failed


def _validate_sampling(params: GenerationParams) -> None:
    """Refuse the sampling settings the engine cannot compute with (``EngineValidationError``).

    Scores are float32: a temperature or repetition penalty that is not a normal float32 (so small that
    dividing by it overflows) turns them into NaN. (``GenerationParams`` holds finite numbers only, and seeds
    that fit a ``torch.Generator``: TGI's ``u64``.)
    """
    for name in ("temperature", "repetition_penalty"):
        value = getattr(params, name)
        if value is not None and value < _SMALLEST_NORMAL_FLOAT32:
            raise EngineValidationError(
                f"Input validation error: `{name}` must be a finite number >= {_SMALLEST_NORMAL_FLOAT32:g} "
                f"(the smallest normal float32). Given: {value}"
            )


def _max_bytes_per_token(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The most bytes of text one token can stand for, when that bounds a text's token count from below.

    A byte-level BPE tokenizer without a normalizer covers every byte of its input with tokens of at most
    this many bytes (its longest vocabulary entry or added token), so a text of ``n`` characters has at least
    ``n / max`` tokens. ``None`` for tokenizers where text can vanish before the model sees it (normalizers,
    pre-tokenizers that drop whitespace): their prompts are always tokenized.
    """
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    keeps_every_byte = any(step.get("type") == "ByteLevel" for step in steps) and all(
        step.get("type") in ("ByteLevel", "Digits", "Punctuation")
        or (step.get("type") == "Split" and step.get("behavior") != "Removed")
        for step in steps
    )
    model = spec.get("model") or {}
    if spec.get("normalizer") is not None or not keeps_every_byte or model.get("type") != "BPE":
        return None
    added = [len(token["content"].encode()) for token in spec.get("added_tokens", [])]
    return max([len(entry) for entry in model["vocab"]] + added)
