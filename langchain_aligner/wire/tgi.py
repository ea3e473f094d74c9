"""TGI's wire protocol (TGI 3.3's OpenAPI document), for the TGI backend and the server alike.

- Requests: :class:`GenerateParameters` is TGI's ``parameters`` object. The backend writes it from
  :class:`~langchain_aligner.GenerationParams` (:meth:`GenerateParameters.of`, sent through
  huggingface_hub's ``InferenceClient``); the server parses ``/generate``, ``/generate_stream`` and ``/``
  bodies with it and reads it back (:meth:`GenerateParameters.to_generation_params`). Field names,
  defaults, ranges and messages are TGI's; the ranges are :mod:`langchain_aligner.generation`'s. A request
  asking for a TGI feature the server does not implement (grammars, watermarking, LoRA adapters, ...) is
  refused, not silently ignored. Bodies are parsed as strictly as TGI's serde parser does
  (:class:`StrictBody`).
- Answers: the server writes :class:`GenerateResponse` and :class:`StreamResponse` events; the backend reads
  what huggingface_hub parsed back through the same models into a
  :class:`~langchain_aligner.backends.Generation` (:meth:`GenerateResponse.generation`,
  :meth:`StreamResponse.generation`). TGI keeps a stop sequence in the text; the reader cuts it.
- Errors: :class:`ErrorResponse` (``{"error", "error_type"}``, also the last event of a failed stream) and
  :data:`ERROR_STATUS`, the HTTP status of each ``error_type``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from langchain_aligner.backends._stops import cut_at_stop
from langchain_aligner.backends.base import Generation
from langchain_aligner.generation import (
    MAX_STOP_SEQUENCES,
    GenerationParams,
    Seed,
    open_unit_interval,
    stop_sequence_limit,
    strictly_positive,
)

__all__ = [
    "ERROR_STATUS",
    "HTTP_ERROR_TYPES",
    "MAX_TOP_N_TOKENS",
    "CompatGenerateRequest",
    "Details",
    "ErrorResponse",
    "FinishReason",
    "GenerateParameters",
    "GenerateRequest",
    "GenerateResponse",
    "GenerateStreamRequest",
    "Info",
    "PrefillToken",
    "SimpleToken",
    "StreamDetails",
    "StreamResponse",
    "StrictBody",
    "Token",
    "read_error",
]

MAX_TOP_N_TOKENS = 5
"""TGI's default ``--max-top-n-tokens``."""

FinishReason = Literal["length", "eos_token", "stop_sequence"]

HTTP_ERROR_TYPES = {
    401: "authentication",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
}
"""The ``error_type`` of an error that is only an HTTP status (no route, no key, a body too large or late)."""

ERROR_STATUS = {
    # TGI's own (its OpenAPI document): every generation route answers these.
    "validation": 422,
    "generation": 424,
    "overloaded": 429,
    "incomplete_generation": 500,
    # Also TGI's: /health when the model cannot generate.
    "healthcheck": 503,
    # This server's, in the same body: draining before shutdown, and a bug (its text stays in the log).
    "unavailable": 503,
    "internal": 500,
    **{error_type: status for status, error_type in HTTP_ERROR_TYPES.items()},
}
"""The HTTP status of each ``error_type``: the server answers with it, and a client that only has the type
(an error event inside a stream) gets the status back from it."""


class StrictBody(BaseModel):
    """A request body parsed as TGI's serde parser does: strict types (an integer field takes only JSON
    integers, a boolean only ``true``/``false``, a string only a string) and finite numbers only. TGI parses
    its OpenAI-compatible routes the same way."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)


def _none_as_empty(value: Any) -> Any:
    return [] if value is None else value


_TokenLists = BeforeValidator(_none_as_empty)
"""TGI leaves empty token lists out; huggingface_hub reads a missing one as ``None``."""


# -- requests ----------------------------------------------------------------------------------------------


class GenerateParameters(StrictBody):
    """TGI's ``parameters`` object, with TGI's validation rules and messages."""

    adapter_id: str | None = Field(default=None, description="LoRA adapter id (not supported).")
    best_of: int | None = Field(default=None, description="Only 1 is supported.")
    decoder_input_details: bool = Field(default=False, description="Return the prompt tokens' logprobs.")
    details: bool = Field(default=False, description="Return generation details.")
    do_sample: bool = Field(default=False, description="Sample instead of greedy decoding.")
    frequency_penalty: float | None = Field(default=None, description="Not supported.")
    grammar: dict[str, Any] | None = Field(default=None, description="Not supported.")
    max_new_tokens: Annotated[int | None, strictly_positive()] = Field(
        default=None, description="Most tokens to generate; default: what fits in max_total_tokens."
    )
    repetition_penalty: Annotated[float | None, strictly_positive()] = Field(
        default=None, description="1.0 means no penalty."
    )
    return_full_text: bool | None = Field(default=None, description="Prepend the prompt to the output.")
    seed: Seed | None = Field(default=None, description="Random sampling seed.")
    stop: Annotated[list[str], stop_sequence_limit] = Field(
        default_factory=list,
        description=f"Stop sequences (at most {MAX_STOP_SEQUENCES}; kept in the output).",
    )
    temperature: Annotated[float | None, strictly_positive()] = Field(
        default=None, description="Sampling temperature, > 0."
    )
    top_k: Annotated[int | None, strictly_positive()] = Field(
        default=None, description="Top-k sampling, > 0."
    )
    top_n_tokens: int | None = Field(default=None, description="Most likely alternatives per token.")
    top_p: Annotated[float | None, open_unit_interval()] = Field(
        default=None, description="Nucleus sampling mass, in (0, 1)."
    )
    truncate: int | None = Field(default=None, description="Not supported.")
    typical_p: Annotated[float | None, open_unit_interval()] = Field(
        default=None, description="Not supported."
    )
    watermark: bool = Field(default=False, description="Not supported.")

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

    @field_validator("adapter_id", "frequency_penalty", "grammar", "truncate", "typical_p", "watermark")
    @classmethod
    def _unsupported(cls, value: Any, info: Any) -> Any:
        if value:
            raise ValueError(f"`{info.field_name}` is not supported by this server")
        return value

    @classmethod
    def of(
        cls, params: GenerationParams, *, details: bool = False, decoder_input_details: bool = False
    ) -> GenerateParameters:
        """``params`` as TGI's ``parameters``; :meth:`to_generation_params` reads them back unchanged.

        ``max_new_tokens``, ``do_sample`` (greedy is ``false``) and ``details`` are always set, the others
        when they have a value. ``details`` asks for the finish reason and token counts,
        ``decoder_input_details`` for the prompt's tokens too (not on a stream)."""
        fields: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": params.do_sample,
            "details": details,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "repetition_penalty": params.repetition_penalty,
            "seed": params.seed,
        }
        if params.stop:
            fields["stop"] = list(params.stop)
        if decoder_input_details:
            fields["decoder_input_details"] = True
        return cls(**{name: value for name, value in fields.items() if value is not None})

    def arguments(self) -> dict[str, Any]:
        """The fields that were set, as a client sends them (the keyword arguments of huggingface_hub's
        ``text_generation``)."""
        return self.model_dump(exclude_unset=True)

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


class GenerateRequest(StrictBody):
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


# -- answers -----------------------------------------------------------------------------------------------


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
    prefill: Annotated[list[PrefillToken], _TokenLists] = Field(default_factory=list)
    tokens: Annotated[list[Token], _TokenLists] = Field(default_factory=list)
    top_tokens: Annotated[list[list[Token]], _TokenLists] = Field(default_factory=list)
    best_of_sequences: None = None


class GenerateResponse(BaseModel):
    """Body of a ``/generate`` answer; ``details`` is left out unless asked for, as on TGI."""

    generated_text: str
    details: Details | None = Field(default=None, exclude_if=lambda details: details is None)

    def generation(self, stop: Sequence[str], model: str) -> Generation:
        """The answer as a :class:`Generation`, cut at the first of ``stop``; the prompt's token count is
        the length of ``prefill`` (asked for with ``decoder_input_details``)."""
        details = self.details
        return Generation(
            text=cut_at_stop(self.generated_text, stop),
            prompt_tokens=len(details.prefill) if details and details.prefill else None,
            completion_tokens=details.generated_tokens if details else None,
            finish_reason=details.finish_reason if details else None,
            model=model,
        )


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
    top_tokens: Annotated[list[Token], _TokenLists] = Field(default_factory=list)
    generated_text: str | None = None
    details: StreamDetails | None = None

    def generation(self, stop: Sequence[str], model: str) -> Generation | None:
        """The whole answer, cut at the first of ``stop``, from the last event (``None`` before it)."""
        details = self.details
        if details is None:
            return None
        return Generation(
            text=cut_at_stop(self.generated_text or "", stop),
            prompt_tokens=details.input_length,
            completion_tokens=details.generated_tokens,
            finish_reason=details.finish_reason,
            model=model,
        )


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
    """Every error body, as TGI sends it (also as an event inside a stream); its status is
    :data:`ERROR_STATUS` of its ``error_type``."""

    error: str
    error_type: str


def read_error(body: bytes | str) -> ErrorResponse | None:
    """``body`` as TGI's error body, or ``None`` when it is not one (a proxy's page, another shape)."""
    try:
        return ErrorResponse.model_validate_json(body)
    except ValidationError:
        return None
