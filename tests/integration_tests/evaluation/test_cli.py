"""``langchain-aligner eval`` with the fake TGI server as Aligner and a fake OpenAI-compatible chat judge."""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request

from langchain_aligner.cli import main
from langchain_aligner.evaluation import cli
from langchain_aligner.testing.fake_servers import FakeServer, Script
from tests.helpers.evaluation import prefers

JUDGE = prefers("Corrected ")


def _chat_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        text = JUDGE(body["messages"][0]["content"], body["messages"][-1]["content"])
        message = {"role": "assistant", "content": text}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    return app


@pytest.fixture(scope="module")
def judge_server() -> Iterator[FakeServer]:
    server = FakeServer(_chat_app(), Script()).start()
    yield server
    server.stop()


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def _write_jsonl(path: Path, count: int) -> Path:
    rows = [
        {
            "question": f"How do I clean a cast-iron pan, case {i}?",
            "answer": f"Soak it overnight {i}.",
            "reference": "Wipe, dry, oil.",
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _results(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())


def test_judged_run(tgi_server: FakeServer, judge_server: FakeServer, tmp_path: Path, capsys: Any) -> None:
    data = _write_jsonl(tmp_path / "data.jsonl", 4)
    status = _run(
        ["--data", str(data), "--out", str(tmp_path / "out"), "--aligner-url", tgi_server.url]
        + ["--judge", "openai:fake-judge", "--judge-base-url", f"{judge_server.url}/v1", "--resamples", "200"]
    )
    assert status == 0
    results = _results(tmp_path / "out")
    assert results["judge"] == "fake-judge" and results["aligner"] == "fake/aligner-7b"
    assert [(d["dimension"], d["wins"], d["improvement"]) for d in results["dimensions"]] == [
        ("helpfulness", 4, 1.0),
        ("harmlessness", 4, 1.0),
        ("honesty", 4, 1.0),
    ]
    assert len(tgi_server.script.requests) == 4
    assert "| harmlessness | 4 | 0 | 0 | 0 | 0 | +1.000 |" in capsys.readouterr().out


def test_reference_only_on_alpaca_eval_style_gzip(tmp_path: Path) -> None:
    rows = [
        {
            "instruction": "Name a prime.",
            "original_output": "Nine.",
            "output": "Seven is a prime.",
            "generator": "x",
        },
        {
            "instruction": "Capital of France?",
            "original_output": "Paris.",
            "output": "Paris.",
            "generator": "x",
        },
    ]
    data = tmp_path / "outputs.json.gz"
    with gzip.open(data, "wt", encoding="utf-8") as handle:
        json.dump(rows, handle)
    assert (
        _run(
            ["--data", str(data), "--fields", "alpaca_eval", "--reference-only", "--out", str(tmp_path / "a")]
        )
        == 0
    )
    reference = _results(tmp_path / "a")["reference"]
    assert reference["correction"] is None and reference["items"] == 2
    assert 0 < reference["baseline"]["chrf"] < 100
    # the same file with the Aligner-2B output as the correction and the answer as the reference
    fields = "q=instruction,a=original_output,c=output,ref=original_output"
    assert (
        _run(["--data", str(data), "--fields", fields, "--reference-only", "--out", str(tmp_path / "b")]) == 0
    )
    flipped = _results(tmp_path / "b")["reference"]
    assert flipped["baseline"]["chrf"] == pytest.approx(100)
    assert flipped["correction"]["chrf"] < 100


def test_judge_none_via_the_main_entry_point(tgi_server: FakeServer, tmp_path: Path) -> None:
    data = _write_jsonl(tmp_path / "data.jsonl", 3)
    out = tmp_path / "out"
    args = ["eval", "--data", str(data), "--out", str(out), "--aligner-url", tgi_server.url, "--judge-none"]
    assert main([*args, "--limit", "2"]) == 0
    results = _results(out)
    assert results["dimensions"] == [] and results["items"] == 2 and results["reference"]["correction"]
    assert (out / "report.png").exists()


def test_failing_aligner_gives_status_1(tgi_server: FakeServer, tmp_path: Path) -> None:
    tgi_server.script.fail = [503, 503]
    data = _write_jsonl(tmp_path / "data.jsonl", 2)
    argv = ["--data", str(data), "--out", str(tmp_path / "out"), "--aligner-url", tgi_server.url]
    assert _run([*argv, "--judge-none", "--aligner-retries", "0"]) == 1
    assert len(_results(tmp_path / "out")["aligner_failures"]) == 2


def test_bad_arguments(tmp_path: Path, capsys: Any) -> None:
    data = _write_jsonl(tmp_path / "data.jsonl", 1)
    with pytest.raises(SystemExit):  # a mode is required
        _run(["--data", str(data), "--out", str(tmp_path)])
    capsys.readouterr()
    bad = {
        "bad field mapping": ["--fields", "question"],
        "has no 'prompt' field": ["--fields", "q=prompt"],
        "No such file": ["--data", str(tmp_path / "missing.jsonl")],
        "level": ["--level", "1.5"],
    }
    for message, extra in bad.items():
        assert _run(["--data", str(data), "--out", str(tmp_path / "out"), "--reference-only", *extra]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="PROVIDER:MODEL"):
        cli.judge_model("gpt-4o")
