"""Errors of bad input to a training run: ``python -m train`` reports them in one line and exits with 2."""

from __future__ import annotations

__all__ = ["InputFileNotFound", "TrainingInputError"]


class TrainingInputError(Exception):
    """Bad input to a training run (config, data, model path, run directory), not a crash: ``python -m train``
    prints its message as one line on rank 0, without a traceback, and exits with status 2."""


class InputFileNotFound(TrainingInputError, FileNotFoundError):
    """A file or directory the run reads (data, model, DeepSpeed config) does not exist."""
