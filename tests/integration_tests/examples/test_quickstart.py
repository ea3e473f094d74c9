"""``examples/quickstart.py`` run as a script; its correction checked against ``AlignerRunnable`` in-process.

The reference path corrects the same question-answer pair in this process with the same model and the
same greedy settings: the quickstart's local server and its ``--in-process`` run must both match it.
Nothing is compared with a hard-coded model output.
"""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import pytest

from langchain_aligner.errors import AlignerCorrectionError
from langchain_aligner.generation import GenerationParams
from langchain_aligner.models import preferred_dtype
from langchain_aligner.runnable import AlignerRunnable
from langchain_aligner.testing.fake_servers import FakeServer
from tests.helpers.examples import QUICKSTART, load_script, run_script, sides_of

MAX_NEW_TOKENS = 6
QUESTION = "Is it fine to skip the seatbelt on short trips?"


@pytest.fixture(scope="module")
def quickstart() -> ModuleType:
    """The quickstart script, imported as a module (for its constants and ``word_diff``)."""
    return load_script(QUICKSTART)


def run_quickstart(*args: str) -> dict[str, str]:
    """Run the quickstart; return its ``Label: value`` output lines by label."""
    return run_script(QUICKSTART, "--max-new-tokens", str(MAX_NEW_TOKENS), *args)


def reference_correction(question: str, answer: str, **backend: str) -> str | AlignerCorrectionError:
    """The correction, or the error that rejects it (empty or degenerate), as the quickstart asks for it."""
    params = GenerationParams(max_new_tokens=MAX_NEW_TOKENS)
    aligner = AlignerRunnable(**backend, generation=params, on_error="raise")
    try:
        return aligner.invoke({"question": question, "answer": answer}).text.strip()
    except AlignerCorrectionError as error:
        return error


def check_output(
    output: dict[str, str], quickstart: ModuleType, question: str, expected: str | AlignerCorrectionError
) -> None:
    assert output["Question"] == question
    assert output["Original answer"] == quickstart.UPSTREAM_ANSWER
    if isinstance(expected, AlignerCorrectionError):
        assert "Corrected answer" not in output
        assert output[f"Rejected correction ({expected.problem})"] == expected.text.strip()
        return
    assert "Rejected correction" not in " ".join(output)
    assert output["Corrected answer"] == expected
    assert sides_of(output["Word diff"]) == (
        " ".join(quickstart.UPSTREAM_ANSWER.split()),
        " ".join(expected.split()),
    )


@pytest.fixture(scope="module")
def embedded_reference(quickstart: ModuleType) -> str | AlignerCorrectionError:
    """The embedded default Aligner's correction of the quickstart's answer, computed in this process."""
    return reference_correction(QUESTION, quickstart.UPSTREAM_ANSWER, backend="transformers")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "aligner"),
    [([], "tgi (local server http://127.0.0.1:"), (["--in-process"], "transformers (in process)")],
    ids=["local-server", "in-process"],
)
def test_quickstart_on_the_embedded_model(
    quickstart: ModuleType, embedded_reference: str | AlignerCorrectionError, flags: list[str], aligner: str
) -> None:
    output = run_quickstart("--question", QUESTION, *flags)
    check_output(output, quickstart, QUESTION, embedded_reference)
    assert output["Aligner"].startswith(aligner)
    assert output["Weights"] == preferred_dtype("cpu")


def test_quickstart_against_a_tgi_server(quickstart: ModuleType, tgi_server: FakeServer) -> None:
    output = run_quickstart("--aligner-url", tgi_server.url)
    expected = reference_correction(
        quickstart.QUESTION, quickstart.UPSTREAM_ANSWER, backend="tgi", url=tgi_server.url
    )
    check_output(output, quickstart, quickstart.QUESTION, expected)
    assert isinstance(expected, str) and expected.startswith("Corrected")  # the fake server's own reply
    assert output["Aligner"] == f"tgi ({tgi_server.url})"
    assert "Weights" not in output  # the server's dtype is the server's business


@pytest.mark.parametrize(
    ("reply", "problem"), [("   ", "empty"), ("1. 1. 1. 1. 1. 1. 1. 1. 1. 1.", "degenerate")]
)
def test_quickstart_shows_a_rejected_correction(
    quickstart: ModuleType, tgi_server: FakeServer, reply: str, problem: str
) -> None:
    tgi_server.script.reply = reply
    output = run_script(QUICKSTART, "--aligner-url", tgi_server.url)
    assert output[f"Rejected correction ({problem})"] == reply.strip()
    assert "Corrected answer" not in output
    assert "original answer" in output["Default policy"]


def test_quickstart_without_the_serve_extra_says_what_to_install() -> None:
    hide_server_deps = (
        "import runpy, sys; sys.modules.update(fastapi=None, uvicorn=None); "
        f"sys.argv = ['quickstart.py']; runpy.run_path({str(QUICKSTART)!r}, run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide_server_deps], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 1
    assert "pip install 'langchain-aligner[serve]'" in done.stderr
    assert "--in-process" in done.stderr
