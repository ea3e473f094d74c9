"""GenerationParams: TGI's contract is checked before anything is sent."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from langchain_aligner import GenerationParams


def test_defaults_are_greedy() -> None:
    params = GenerationParams()
    assert params.do_sample is False and params.temperature is None and params.top_p is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"do_sample": True, "temperature": 0.0}, "`temperature` must be strictly positive; for greedy"),
        ({"do_sample": True, "top_p": 1.0}, r"`top_p` must be > 0.0 and < 1.0; leave it unset"),
        ({"do_sample": True, "top_p": 0.0}, r"`top_p` must be > 0.0 and < 1.0"),
        ({"temperature": 0.7}, "need do_sample=True"),
        ({"top_k": 5}, "need do_sample=True"),
        ({"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
        ({"repetition_penalty": 0.0}, "`repetition_penalty` must be strictly positive"),
        ({"stop": ("a", "b", "c", "d", "e")}, "`stop` supports up to 4 stop sequences. Given: 5"),
        ({"seed": -1}, "greater than or equal to 0"),
        ({"max_tokens": 5}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_values_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GenerationParams(**kwargs)


def test_sampling_settings_are_accepted_with_sampling() -> None:
    params = GenerationParams(do_sample=True, temperature=0.7, top_p=0.9, top_k=40, seed=3, stop=("\n\n",))
    assert params.top_p == 0.9 and params.stop == ("\n\n",)


def test_params_are_frozen_and_hashable() -> None:
    params = GenerationParams(max_new_tokens=8)
    assert hash(params) == hash(GenerationParams(max_new_tokens=8))
    with pytest.raises(ValidationError):
        params.max_new_tokens = 9  # type: ignore[misc]
