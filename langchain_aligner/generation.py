"""Generation parameters, validated before anything is sent to a backend, and the ranges they are held to.

TGI rejects some values that other engines accept (``top_p=1.0``, ``temperature=0``, a fifth stop sequence),
so the checks here follow TGI's contract: a request that passes them is accepted by every supported backend.
The same rules, with TGI's messages, validate the server's requests (:mod:`langchain_aligner.wire`).
"""

from __future__ import annotations

from collections.abc import Callable, Sized
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator

__all__ = [
    "MAX_SEED",
    "MAX_STOP_SEQUENCES",
    "GenerationParams",
    "Seed",
    "open_unit_interval",
    "stop_sequence_limit",
    "strictly_positive",
]

MAX_SEED = 2**64 - 1
"""Largest ``seed``: TGI's seed is a ``u64`` (torch's generators take the same range)."""

MAX_STOP_SEQUENCES = 4
"""Stop sequences a request may have (TGI's default ``--max-stop-sequences``)."""

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
"""A sampling seed: TGI's ``u64``."""


def _rule(holds: Callable[[Any], bool], requirement: str, advice: str) -> AfterValidator:
    """A field check: ``None`` or a value that ``holds``, else ``"`<field>` <requirement>[; <advice>]"``."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if value is not None and not holds(value):
            raise ValueError(f"`{info.field_name}` {requirement}" + (f"; {advice}" if advice else ""))
        return value

    return AfterValidator(check)


def strictly_positive(advice: str = "") -> AfterValidator:
    """Field check for ``> 0``, refused in TGI's words ("`temperature` must be strictly positive")."""
    return _rule(lambda value: value > 0, "must be strictly positive", advice)


def open_unit_interval(advice: str = "") -> AfterValidator:
    """Field check for the open interval (0, 1), refused in TGI's words ("`top_p` must be > 0.0 and
    < 1.0")."""
    return _rule(lambda value: 0 < value < 1, "must be > 0.0 and < 1.0", advice)


def _at_most_max_stops(stop: Sized, info: ValidationInfo) -> Any:
    if len(stop) > MAX_STOP_SEQUENCES:
        raise ValueError(
            f"`{info.field_name}` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(stop)}"
        )
    return stop


stop_sequence_limit = AfterValidator(_at_most_max_stops)
"""Field check: at most :data:`MAX_STOP_SEQUENCES` stop sequences, refused in TGI's words."""


class GenerationParams(BaseModel):
    """Decoding settings for one Aligner call. Greedy decoding (``do_sample=False``) is the default."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_new_tokens: Annotated[int, strictly_positive()] = Field(
        default=512, description="Most tokens the correction may have."
    )
    do_sample: bool = Field(default=False, description="Sample instead of greedy decoding.")
    temperature: Annotated[
        float | None, strictly_positive("for greedy decoding set do_sample=False instead")
    ] = Field(default=None, description="Sampling temperature, > 0.")
    top_p: Annotated[
        float | None, open_unit_interval("leave it unset (None) to disable nucleus sampling")
    ] = Field(default=None, description="Nucleus sampling mass, in (0, 1).")
    top_k: Annotated[int | None, strictly_positive()] = Field(
        default=None, description="Sample among the k most likely tokens."
    )
    repetition_penalty: Annotated[float | None, strictly_positive()] = Field(
        default=None, description="1.0 means no penalty."
    )
    stop: Annotated[tuple[str, ...], stop_sequence_limit] = Field(
        default=(), description="Stop sequences (at most 4), not included in the output."
    )
    seed: Seed | None = Field(default=None, description="Random seed for sampling, < 2**64.")

    @model_validator(mode="after")
    def _sampling_settings_need_sampling(self) -> GenerationParams:
        if not self.do_sample and (self.temperature is not None or self.top_p is not None or self.top_k):
            # Silently ignoring them would surprise users; TGI itself turns sampling on for them.
            raise ValueError("temperature/top_p/top_k need do_sample=True")
        return self
