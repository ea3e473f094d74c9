"""Generation parameters, validated before anything is sent to a backend.

TGI rejects some values that other engines accept (``top_p=1.0``, ``temperature=0``), so the checks here
follow TGI's contract: a request that passes them is accepted by every supported backend.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["GenerationParams"]


class GenerationParams(BaseModel):
    """Decoding settings for one Aligner call. Greedy decoding (``do_sample=False``) is the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(default=512, gt=0, description="Most tokens the correction may have.")
    do_sample: bool = Field(default=False, description="Sample instead of greedy decoding.")
    temperature: float | None = Field(default=None, description="Sampling temperature, > 0.")
    top_p: float | None = Field(default=None, description="Nucleus sampling mass, in (0, 1).")
    top_k: int | None = Field(default=None, gt=0, description="Sample among the k most likely tokens.")
    repetition_penalty: float | None = Field(default=None, gt=0, description="1.0 means no penalty.")
    stop: tuple[str, ...] = Field(default=(), description="Stop sequences, not included in the output.")
    seed: int | None = Field(default=None, ge=0, description="Random seed for sampling.")

    @field_validator("temperature")
    @classmethod
    def _positive_temperature(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("temperature must be > 0; for greedy decoding set do_sample=False instead")
        return value

    @field_validator("top_p")
    @classmethod
    def _open_unit_top_p(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value < 1:
            raise ValueError("top_p must be in (0, 1); leave it unset (None) to disable nucleus sampling")
        return value

    @model_validator(mode="after")
    def _sampling_settings_need_sampling(self) -> GenerationParams:
        if not self.do_sample and (self.temperature is not None or self.top_p is not None or self.top_k):
            # Silently ignoring them would surprise users; TGI itself turns sampling on for them.
            raise ValueError("temperature/top_p/top_k need do_sample=True")
        return self
