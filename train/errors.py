"""Errors of bad input to a training run: ``langchain-aligner train`` reports them in one line, status 2."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["ConfigError", "InputFileNotFound", "TrainingInputError", "validation_summary"]


class TrainingInputError(Exception):
    """Bad input to a training run (config, data, model path, run directory), not a crash: ``langchain-aligner
    train`` prints its message as one line on rank 0, without a traceback, and exits with status 2."""


class InputFileNotFound(TrainingInputError, FileNotFoundError):
    """A file or directory the run reads (data, model, DeepSpeed config) does not exist."""


class ConfigError(TrainingInputError, ValueError):
    """A config file or override is malformed: unknown key, wrong type or out-of-range value."""


def validation_summary(error: ValidationError, key: str = "") -> str:
    """A pydantic validation error in one line: ``key: message (got value)`` for each problem, ``; ``
    between them; the key as a config names it (``lora.r``, ``data[0].kind``), under ``key`` if given (the
    key of the value that was validated, e.g. ``data[0]``)."""
    problems = []
    for problem in error.errors():
        text = problem["msg"].removeprefix("Value error, ")
        value = problem.get("input")
        if problem["type"] != "missing" and not isinstance(value, (dict, list)):
            text += f" (got {value!r})"
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem["loc"])
        key = (key + path).removeprefix(".")
        # A check of our own names its key already ("lora.dropout must be ..."): no second prefix.
        problems.append(f"{key}: {text}" if key and not text.startswith(key) else text)
    return "; ".join(problems)
