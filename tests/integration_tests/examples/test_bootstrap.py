"""examples/bootstrap/run.py end to end, smallest settings: a tiny upstream Llama, the Aligner on TGI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from langchain_aligner.models import is_exported_model, load_model_and_tokenizer
from langchain_aligner.records import read_objects
from langchain_aligner.testing.fake_servers import FakeServer
from langchain_aligner_train.preference import read_corrections
from tests.helpers.examples import load_script
from tests.helpers.paths import EXAMPLES

SCRIPT = EXAMPLES / "bootstrap" / "run.py"
QUESTIONS = 3


@pytest.mark.slow
def test_the_loop_writes_every_stage(tiny_llama_dir: Path, tgi_server: FakeServer, tmp_path: Path) -> None:
    work = tmp_path / "bootstrap"
    command = [sys.executable, str(SCRIPT), "--work-dir", str(work), "--upstream", str(tiny_llama_dir)]
    command += ["--aligner-url", tgi_server.url, "--questions", str(QUESTIONS), "--max-new-tokens", "24"]
    done = subprocess.run([*command, "max_steps=2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    questions = load_script(SCRIPT).QUESTIONS[:QUESTIONS]
    answers = read_objects(work / "01_answers.jsonl")
    assert [row["question"] for row in answers] == questions
    corrections = read_corrections(work / "02_corrections.jsonl")
    assert [c.answer for c in corrections] == [row["answer"] for row in answers]
    assert all(c.corrected and c.correction.startswith("Corrected ") for c in corrections)
    assert len(tgi_server.script.requests) == QUESTIONS

    counts = json.loads((work / "03_data" / "counts.json").read_text())
    assert counts["total"] == QUESTIONS and counts["kept"] == QUESTIONS  # every fake correction differs
    preference = read_objects(work / "03_data" / "preference.jsonl")
    assert [row["chosen"][0]["content"] for row in preference] == [c.correction for c in corrections]
    assert len(read_objects(work / "03_data" / "sft.jsonl")) == counts["sft"] == QUESTIONS

    state = json.loads((work / "04_dpo" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    model_dir = work / "04_dpo" / "model"
    assert is_exported_model(model_dir)
    model, tokenizer = load_model_and_tokenizer(model_dir)
    assert tokenizer.chat_template  # the DPO config's template went with the export
    assert model.config.num_hidden_layers == 2

    after = read_objects(work / "05_answers_after.jsonl")
    assert [row["question"] for row in after] == questions
    assert [row["before"] for row in after] == [row["answer"] for row in answers]
    summary = json.loads((work / "summary.json").read_text())
    assert summary["preference_pairs"] == QUESTIONS
    assert summary["dpo"]["rewards/margins"] > 0  # one update on the pairs already separates them
    assert summary["answers_changed"] == sum(row["before"] != row["after"] for row in after)
