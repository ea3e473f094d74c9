"""``langchain-aligner serve`` in-process: its help, limits the model cannot hold (refused once the model is
loaded, before it listens) and the dtype it loads."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from langchain_aligner.cli import main
from langchain_aligner.models import preferred_dtype


def test_serve_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    usage = capsys.readouterr().out
    options = ("--model", "--max-batch-size", "--max-batch-prefill-tokens", "--max-concurrent-requests")
    for option in (*options, "--api-key", "--dtype"):
        assert option in usage


def test_serve_command_refuses_limits_the_model_cannot_hold(
    tiny_llama_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["serve", "--model", str(tiny_llama_dir), "--max-total-tokens", "4096"]) == 2
    assert "max_total_tokens=4096 exceeds the model's 256 positions" in caplog.text


@pytest.mark.parametrize("given", [None, "float32"])
def test_serve_loads_the_preferred_dtype_unless_given(
    tiny_llama_dir: Path, caplog: pytest.LogCaptureFixture, given: str | None
) -> None:
    caplog.set_level(logging.INFO, logger="langchain_aligner.server.cli")
    dtype = ["--dtype", given] if given else []
    # Limits the model cannot hold: serve stops once the model is loaded, before it listens.
    assert main(["serve", "--model", str(tiny_llama_dir), "--max-total-tokens", "4096", *dtype]) == 2
    assert f"({given or preferred_dtype('cpu')} on cpu)" in caplog.text
