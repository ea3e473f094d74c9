"""The wire protocols refuse what JSON cannot carry (NaN, infinity) before anything is sent."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from langchain_aligner import GenerationParams


@pytest.mark.parametrize("setting", ["temperature", "top_p", "repetition_penalty"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_numbers_json_cannot_carry_are_refused(setting: str, value: float) -> None:
    """NaN and infinity are not JSON: no client can send them (they failed every call as a bad reply)."""
    settings: dict[str, Any] = {setting: value}
    with pytest.raises(ValidationError, match=setting):
        GenerationParams(do_sample=True, **settings)
