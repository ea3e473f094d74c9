"""Request and response bodies of the server: TGI's API (TGI 3.3) and the OpenAI-compatible routes.

The field names, defaults and validation messages follow TGI's OpenAPI document, so clients written for
TGI (``huggingface_hub.InferenceClient``) and for OpenAI (``openai``) work unchanged. A request that asks
for a TGI feature this server does not implement (grammars, watermarking, LoRA adapters, ...) is refused
with a validation error instead of being silently ignored. Requests are parsed as strictly as TGI's serde
parser does: no ``NaN`` or infinite numbers, no ``"5"``, ``5.0`` or ``true`` for an integer, no number for a
boolean, and a seed must fit TGI's ``u64``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from langchain_aligner.generation import GenerationParams
from langchain_aligner.server.engine import MAX_TOP_N_TOKENS

__all__ = [
    "MAX_SEED",
    "MAX_STOP_SEQUENCES",
    "FinishReason",
    "GenerateParameters",
    "GenerateRequest",
    "GenerateStreamRequest",
    "CompatGenerateRequest",
    "Token",
    "PrefillToken",
    "Details",
    "GenerateResponse",
    "StreamDetails",
    "StreamResponse",
    "SimpleToken",
    "Info",
    "ErrorResponse",
    "CompletionRequest",
    "CompletionChoice",
    "Usage",
    "CompletionResponse",
    "CompletionChunk",
    "ChatMessage",
    "ChatRequest",
    "AssistantMessage",
    "ChatChoice",
    "ChatCompletionResponse",
    "ChatChunkChoice",
    "ChatCompletionChunk",
    "ModelCard",
    "ModelList",
]

MAX_STOP_SEQUENCES = 4
"""Stop sequences a request may have (TGI's default ``--max-stop-sequences``)."""

MAX_SEED = 2**64 - 1
"""Largest ``seed``: TGI's seed is a ``u64`` (torch's generators take the same range)."""

FinishReason = Literal["length", "eos_token", "stop_sequence"]


def _strictly_positive(name: str, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise ValueError(f"`{name}` must be strictly positive")
    return value


def _open_unit(name: str, value: float | None) -> float | None:
    if value is not None and not 0 < value < 1:
        raise ValueError(f"`{name}` must be > 0.0 and < 1.0")
    return value


def _check_stops(stop: list[str]) -> list[str]:
    if len(stop) > MAX_STOP_SEQUENCES:
        raise ValueError(f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(stop)}")
    return stop


class _StrictRequest(BaseModel):
    """A request body parsed as TGI's serde parser does: strict types (an integer field takes only JSON
    integers, a boolean only ``true``/``false``, a string only a string) and finite numbers only."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)


# -- TGI requests ------------------------------------------------------------------------------------------


class GenerateParameters(_StrictRequest):
    """TGI's ``parameters`` object, with TGI's validation rules and messages."""

    adapter_id: str | None = Field(default=None, description="LoRA adapter id (not supported).")
    best_of: int | None = Field(default=None, description="Only 1 is supported.")
    decoder_input_details: bool = Field(default=False, description="Return the prompt tokens' logprobs.")
    details: bool = Field(default=False, description="Return generation details.")
    do_sample: bool = Field(default=False, description="Sample instead of greedy decoding.")
    frequency_penalty: float | None = Field(default=None, description="Not supported.")
    grammar: dict[str, Any] | None = Field(default=None, description="Not supported.")
    max_new_tokens: int | None = Field(
        default=None, description="Most tokens to generate; default: what fits in max_total_tokens."
    )
    repetition_penalty: float | None = Field(default=None, description="1.0 means no penalty.")
    return_full_text: bool | None = Field(default=None, description="Prepend the prompt to the output.")
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="Random sampling seed.")
    stop: list[str] = Field(default_factory=list, description="Stop sequences (kept in the output).")
    temperature: float | None = Field(default=None, description="Sampling temperature, > 0.")
    top_k: int | None = Field(default=None, description="Top-k sampling, > 0.")
    top_n_tokens: int | None = Field(default=None, description="Most likely alternatives per token.")
    top_p: float | None = Field(default=None, description="Nucleus sampling mass, in (0, 1).")
    truncate: int | None = Field(default=None, description="Not supported.")
    typical_p: float | None = Field(default=None, description="Not supported.")
    watermark: bool = Field(default=False, description="Not supported.")

    @field_validator("temperature", "repetition_penalty", "top_k", "max_new_tokens")
    @classmethod
    def _positive(cls, value: float | None, info: Any) -> float | None:
        return _strictly_positive(info.field_name, value)

    @field_validator("top_p", "typical_p")
    @classmethod
    def _unit(cls, value: float | None, info: Any) -> float | None:
        return _open_unit(info.field_name, value)

    @field_validator("best_of")
    @classmethod
    def _single_sequence(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError(f"`best_of` must be > 0 and <= 1. Given: {value}")
        return value

    @field_validator("top_n_tokens")
    @classmethod
    def _top_n(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= MAX_TOP_N_TOKENS:
            raise ValueError(f"`top_n_tokens` must be >= 0 and <= {MAX_TOP_N_TOKENS}. Given: {value}")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: list[str]) -> list[str]:
        return _check_stops(value)

    @field_validator("adapter_id", "frequency_penalty", "grammar", "truncate", "typical_p", "watermark")
    @classmethod
    def _unsupported(cls, value: Any, info: Any) -> Any:
        if value:
            raise ValueError(f"`{info.field_name}` is not supported by this server")
        return value

    def to_generation_params(self, max_new_tokens: int) -> GenerationParams:
        """These settings as :class:`GenerationParams`; ``max_new_tokens`` is used when none was given.

        As on TGI, ``temperature`` (other than 1), ``top_p`` or ``top_k`` turn sampling on by themselves.
        """
        sample = (
            self.do_sample
            or self.temperature not in (None, 1.0)
            or self.top_p is not None
            or self.top_k is not None
        )
        return GenerationParams(
            max_new_tokens=self.max_new_tokens or max_new_tokens,
            do_sample=sample,
            temperature=self.temperature if sample else None,
            top_p=self.top_p if sample else None,
            top_k=self.top_k if sample else None,
            repetition_penalty=self.repetition_penalty,
            stop=tuple(self.stop),
            seed=self.seed,
        )


class GenerateRequest(_StrictRequest):
    """Body of ``POST /generate`` and ``POST /tokenize``."""

    inputs: str = Field(description="The prompt; the server adds the BOS token itself.")
    parameters: GenerateParameters = Field(default_factory=GenerateParameters)

    @field_validator("inputs")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("`inputs` cannot be empty")
        return value


def _check_streamable(parameters: GenerateParameters) -> None:
    if parameters.decoder_input_details:
        raise ValueError("`decoder_input_details` == true is not supported when streaming tokens")


class GenerateStreamRequest(GenerateRequest):
    """Body of ``POST /generate_stream``: as TGI, it refuses ``decoder_input_details``."""

    @model_validator(mode="after")
    def _streamable(self) -> GenerateStreamRequest:
        _check_streamable(self.parameters)
        return self


class CompatGenerateRequest(GenerateRequest):
    """Body of ``POST /``: a ``/generate`` request that may ask for a stream (then checked as one)."""

    stream: bool = False

    @model_validator(mode="after")
    def _streamable(self) -> CompatGenerateRequest:
        if self.stream:
            _check_streamable(self.parameters)
        return self


# -- TGI responses -----------------------------------------------------------------------------------------


class Token(BaseModel):
    """A generated token."""

    id: int
    text: str
    logprob: float | None
    special: bool


class PrefillToken(BaseModel):
    """A prompt token (``decoder_input_details``); the first has no logprob."""

    id: int
    text: str
    logprob: float | None


class Details(BaseModel):
    """``details`` of a ``/generate`` response."""

    finish_reason: FinishReason
    generated_tokens: int
    seed: int | None = None
    prefill: list[PrefillToken] = Field(default_factory=list)
    tokens: list[Token] = Field(default_factory=list)
    top_tokens: list[list[Token]] = Field(default_factory=list)
    best_of_sequences: None = None


class GenerateResponse(BaseModel):
    """Body of a ``/generate`` answer; ``details`` is left out unless asked for, as on TGI."""

    generated_text: str
    details: Details | None = Field(default=None, exclude_if=lambda details: details is None)


class StreamDetails(BaseModel):
    """``details`` of the last ``/generate_stream`` event."""

    finish_reason: FinishReason
    generated_tokens: int
    input_length: int
    seed: int | None = None


class StreamResponse(BaseModel):
    """One ``/generate_stream`` event; the last carries ``generated_text`` and ``details``."""

    index: int
    token: Token
    top_tokens: list[Token] = Field(default_factory=list)
    generated_text: str | None = None
    details: StreamDetails | None = None


class SimpleToken(BaseModel):
    """One entry of a ``/tokenize`` answer: the token and its character span in the input."""

    id: int
    text: str
    start: int
    stop: int


class Info(BaseModel):
    """Body of ``GET /info``."""

    model_id: str
    model_sha: str | None = None
    model_pipeline_tag: str | None = "text-generation"
    max_concurrent_requests: int
    max_best_of: int = 1
    max_stop_sequences: int = MAX_STOP_SEQUENCES
    max_input_tokens: int
    max_total_tokens: int
    validation_workers: int = 1
    max_client_batch_size: int = 1
    router: str = "langchain-aligner"
    version: str
    sha: str | None = None
    docker_label: str | None = None


class ErrorResponse(BaseModel):
    """Every error body, as TGI sends it (also as an event inside a stream)."""

    error: str
    error_type: str


# -- OpenAI-compatible -------------------------------------------------------------------------------------


_UNSUPPORTED_OPENAI = (
    "echo",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "presence_penalty",
    "response_format",
    "suffix",
    "top_logprobs",
)
"""OpenAI request fields this server cannot honour: refused when set to anything but a null value."""


class _OpenAIParameters(_StrictRequest):
    """Sampling fields shared by completions and chat requests (OpenAI semantics)."""

    model: str | None = None
    max_tokens: int | None = Field(default=None, description="Default: what fits in max_total_tokens.")
    temperature: float | None = Field(default=None, ge=0, description="0 or unset: greedy decoding.")
    top_p: float | None = Field(default=None, gt=0, le=1, description="1 or unset: no nucleus sampling.")
    top_k: int | None = Field(default=None, gt=0, description="vLLM's extension, in the request body.")
    repetition_penalty: float | None = Field(default=None, gt=0)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    stop: list[str] = Field(default_factory=list)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data: Any) -> Any:
        for key in _UNSUPPORTED_OPENAI if isinstance(data, dict) else ():
            if data.get(key):
                raise ValueError(f"`{key}` is not supported by this server")
        return data

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        """OpenAI's ``stop`` may be one string, a list or null."""
        return [value] if isinstance(value, str) else [] if value is None else value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: list[str]) -> list[str]:
        return _check_stops(value)

    @field_validator("max_tokens")
    @classmethod
    def _positive_tokens(cls, value: int | None) -> float | None:
        return _strictly_positive("max_tokens", value)

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("`n` must be 1: this server returns one choice per prompt")
        return value

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk (``stream_options.include_usage``)."""
        return bool((self.stream_options or {}).get("include_usage"))

    def to_generation_params(self, max_new_tokens: int) -> GenerationParams:
        """As :class:`GenerationParams`: temperature 0 (or none) is greedy; ``top_p=1`` is no nucleus."""
        sample = bool(self.temperature)
        return GenerationParams(
            max_new_tokens=self.max_tokens or max_new_tokens,
            do_sample=sample,
            temperature=self.temperature if sample else None,
            top_p=self.top_p if sample and self.top_p != 1 else None,
            top_k=self.top_k if sample else None,
            repetition_penalty=self.repetition_penalty,
            stop=tuple(self.stop),
            seed=self.seed,
        )


class CompletionRequest(_OpenAIParameters):
    """Body of ``POST /v1/completions`` (one prompt per request)."""

    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        prompts = [value] if isinstance(value, str) else value
        if len(prompts) != 1:
            raise ValueError("`prompt` must be one string: this server takes one prompt per request")
        if not prompts[0]:
            raise ValueError("`prompt` cannot be empty")
        return value

    @property
    def text(self) -> str:
        """The prompt."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class CompletionChoice(BaseModel):
    """A completion; in a stream, ``finish_reason`` is ``""`` until the last chunk (as on TGI)."""

    index: int = 0
    text: str
    finish_reason: str
    logprobs: None = None


class Usage(BaseModel):
    """Token counts of one request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class _OpenAIObject(BaseModel):
    """Fields every OpenAI-compatible answer and chunk starts with."""

    id: str
    created: int
    model: str
    system_fingerprint: str


class CompletionResponse(_OpenAIObject):
    """Body of a non-streamed ``/v1/completions`` answer."""

    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
    usage: Usage


class CompletionChunk(_OpenAIObject):
    """One event of a streamed ``/v1/completions`` answer; the optional last one has ``usage`` only."""

    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ChatMessage(_StrictRequest):
    """A chat message; ``content`` is a string or a list of ``{"type": "text", "text": ...}`` parts."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text; image parts are refused."""
        if isinstance(self.content, list):
            if any(part.get("type") != "text" for part in self.content):
                raise ValueError("only text content parts are supported")
            return "".join(str(part.get("text", "")) for part in self.content)
        return self.content or ""


class ChatRequest(_OpenAIParameters):
    """Body of ``POST /v1/chat/completions``; the prompt is the tokenizer's chat template applied to
    ``messages``. Tools are not supported."""

    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value:
            raise ValueError("`tools` are not supported by this server")
        return value


class AssistantMessage(BaseModel):
    """The generated message (or, in a stream, a piece of it)."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    """A chat completion."""

    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletionResponse(_OpenAIObject):
    """Body of a non-streamed ``/v1/chat/completions`` answer."""

    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: Usage


class ChatChunkChoice(BaseModel):
    """A piece of a streamed chat completion."""

    index: int = 0
    delta: AssistantMessage
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(_OpenAIObject):
    """One event of a streamed ``/v1/chat/completions`` answer."""

    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    """A served model; ``max_model_len`` is vLLM's field (input plus output tokens)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "langchain-aligner"
    max_model_len: int


class ModelList(BaseModel):
    """Body of ``GET /v1/models``.

    TGI answers with a single ``ModelInfo`` (``id``, ``object``, ``created``, ``owned_by``); OpenAI clients
    expect a list in ``data``. This body is both: the list, plus the served model's fields at the top.
    """

    object: Literal["list"] = "list"
    data: list[ModelCard]
    id: str
    created: int
    owned_by: str = "langchain-aligner"
