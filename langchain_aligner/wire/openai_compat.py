"""The OpenAI-compatible wire protocol (``/v1/completions``, ``/v1/chat/completions``), for the ``openai``
backend and the server alike.

- Requests: :class:`SamplingFields` are the decoding fields completions and chat requests share. The
  backend writes them from :class:`~langchain_aligner.GenerationParams` (:meth:`SamplingFields.of`, sent
  through the ``openai`` client); the server parses :class:`CompletionRequest` and :class:`ChatRequest` and
  reads them back (:meth:`SamplingFields.to_generation_params`). OpenAI's semantics: there is no
  ``do_sample``; greedy is ``temperature=0``, and sampling's neutral values (``temperature=1``,
  ``top_p=1``) mean unset. ``top_k`` and ``repetition_penalty`` are vLLM's and SGLang's extensions,
  outside OpenAI's API.
- Answers: the server writes :class:`CompletionResponse` and :class:`CompletionChunk` events (a stop
  sequence is cut, as OpenAI does); the backend reads what the ``openai`` client parsed
  (:func:`completion_generation`, :class:`CompletionStream`). Finish reasons are OpenAI's: ``length`` or
  ``stop`` (:func:`finish_reason`).
- Errors: the server sends TGI's body (:class:`~langchain_aligner.wire.tgi.ErrorResponse`), as TGI does on
  these routes; :func:`read_error` reads it, OpenAI's and vLLM's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from langchain_aligner.backends.base import Generation, GenerationDelta, stream_cut_short
from langchain_aligner.generation import GenerationParams, Seed, stop_sequence_limit, strictly_positive
from langchain_aligner.wire.tgi import FinishReason, StrictBody

if TYPE_CHECKING:
    from openai.types import Completion

__all__ = [
    "AssistantMessage",
    "ChatChoice",
    "ChatChunkChoice",
    "ChatCompletionChunk",
    "ChatCompletionResponse",
    "ChatMessage",
    "ChatRequest",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionRequest",
    "CompletionResponse",
    "CompletionStream",
    "ModelCard",
    "ModelList",
    "SamplingFields",
    "Usage",
    "completion_generation",
    "finish_reason",
    "read_error",
]

_UNSUPPORTED = (
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

_EXTENSIONS = ("top_k", "repetition_penalty")
"""Fields outside OpenAI's API (vLLM and SGLang read them in the body; the ``openai`` client sends them as
``extra_body``)."""


# -- requests ----------------------------------------------------------------------------------------------


class SamplingFields(StrictBody):
    """The decoding fields of completions and chat requests (OpenAI semantics)."""

    model: str | None = None
    max_tokens: Annotated[int | None, strictly_positive()] = Field(
        default=None, description="Default: what fits in max_total_tokens."
    )
    temperature: float | None = Field(default=None, ge=0, description="0 or unset: greedy decoding.")
    top_p: float | None = Field(default=None, gt=0, le=1, description="1 or unset: no nucleus sampling.")
    top_k: int | None = Field(default=None, gt=0, description="vLLM's extension, in the request body.")
    repetition_penalty: float | None = Field(default=None, gt=0)
    seed: Seed | None = None
    stop: Annotated[list[str], stop_sequence_limit] = Field(default_factory=list)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data: Any) -> Any:
        for key in _UNSUPPORTED if isinstance(data, dict) else ():
            if data.get(key):
                raise ValueError(f"`{key}` is not supported by this server")
        return data

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        """OpenAI's ``stop`` may be one string, a list or null."""
        return [value] if isinstance(value, str) else [] if value is None else value

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

    @classmethod
    def of(cls, params: GenerationParams) -> SamplingFields:
        """``params`` as OpenAI's fields; :meth:`to_generation_params` reads them back unchanged.

        ``temperature`` is always sent (0 when greedy, 1 when sampling without one), so a server's own
        defaults (vLLM's ``generation_config.json``) never apply."""
        return cls(
            max_tokens=params.max_new_tokens,
            temperature=(params.temperature or 1.0) if params.do_sample else 0.0,
            top_p=params.top_p,
            top_k=params.top_k,
            repetition_penalty=params.repetition_penalty,
            seed=params.seed,
            stop=list(params.stop),
        )

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments for the ``openai`` client's ``create``: the fields that are set, the extensions
        in ``extra_body``."""
        fields = self.model_dump(exclude_defaults=True)
        extra = {name: fields.pop(name) for name in _EXTENSIONS if name in fields}
        return {**fields, "extra_body": extra or None}

    def to_generation_params(self, max_new_tokens: int) -> GenerationParams:
        """As :class:`GenerationParams` (``max_new_tokens`` when no ``max_tokens`` was given): temperature 0
        (or none) is greedy; temperature 1 and ``top_p=1`` are sampling without them."""
        sample = bool(self.temperature)
        return GenerationParams(
            max_new_tokens=self.max_tokens or max_new_tokens,
            do_sample=sample,
            temperature=self.temperature if sample and self.temperature != 1 else None,
            top_p=self.top_p if sample and self.top_p != 1 else None,
            top_k=self.top_k if sample else None,
            repetition_penalty=self.repetition_penalty,
            stop=tuple(self.stop),
            seed=self.seed,
        )


class CompletionRequest(SamplingFields):
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


class ChatMessage(StrictBody):
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


class ChatRequest(SamplingFields):
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


# -- answers -----------------------------------------------------------------------------------------------


def finish_reason(reason: FinishReason) -> Literal["length", "stop"]:
    """OpenAI's finish reason for TGI's: ``length``, else ``stop`` (an EOS token or a stop sequence)."""
    return "length" if reason == "length" else "stop"


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


def completion_generation(completion: Completion, model: str) -> Generation:
    """A completion, as the ``openai`` client parsed it, as a :class:`Generation` (``model`` when the
    answer names none)."""
    choice = completion.choices[0]
    usage = completion.usage
    return Generation(
        text=choice.text,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        finish_reason=choice.finish_reason,
        model=completion.model or model,
    )


class CompletionStream:
    """Reads a completions stream, chunk by chunk as the ``openai`` client parsed them: text pieces, the
    finish reason (``""`` or ``null`` until the last chunk) and the closing usage chunk."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Any = None

    def add(self, chunk: Completion) -> GenerationDelta | None:
        """The chunk's text as a piece, or ``None`` when it has none."""
        self.usage = chunk.usage or self.usage
        if not chunk.choices:
            return None
        choice = chunk.choices[0]
        self.finish_reason = choice.finish_reason or self.finish_reason
        if not choice.text:
            return None
        self.parts.append(choice.text)
        return GenerationDelta(choice.text)

    def finish(self) -> GenerationDelta:
        """The closing piece with the finished generation; a stream without a finish reason was cut short."""
        if self.finish_reason is None:
            raise stream_cut_short("the completions server")
        generation = Generation(
            text="".join(self.parts),
            prompt_tokens=self.usage.prompt_tokens if self.usage else None,
            completion_tokens=self.usage.completion_tokens if self.usage else None,
            finish_reason=self.finish_reason,
            model=self.model,
        )
        return GenerationDelta("", generation=generation)


# -- errors ------------------------------------------------------------------------------------------------


def read_error(body: Any) -> tuple[str | None, str | None]:
    """The message and type of an error body: TGI's ``{"error": "...", "error_type": ...}`` (TGI and this
    server send it on their OpenAI-compatible routes), OpenAI's ``{"error": {"message": ..., "type": ...}}``
    or vLLM's flat ``{"message": ..., "type": ...}``; ``None`` for what the body does not hold."""
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if isinstance(error, dict):
        message, error_type = error.get("message"), error.get("type")
    elif error is not None:
        message, error_type = error, body.get("error_type")
    else:
        message, error_type = body.get("message"), body.get("type")
    return (str(message) if message else None), (str(error_type) if error_type else None)
