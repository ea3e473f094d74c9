"""``langchain-aligner eval`` with the fake TGI server as Aligner and a fake OpenAI-compatible chat judge."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request

from langchain_aligner.cli import main
from langchain_aligner.testing.fake_servers import FakeServer, Script
from tests.helpers.evaluation import prefers, read_results, run_eval_cli, write_eval_data

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


def test_judged_run(tgi_server: FakeServer, judge_server: FakeServer, tmp_path: Path, capsys: Any) -> None:
    data = write_eval_data(tmp_path / "data.jsonl", 4)
    status = run_eval_cli(
        ["--data", str(data), "--out", str(tmp_path / "out"), "--aligner-url", tgi_server.url]
        + ["--judge", "openai:fake-judge", "--judge-base-url", f"{judge_server.url}/v1", "--resamples", "200"]
    )
    assert status == 0
    results = read_results(tmp_path / "out")
    assert results["judge"] == "fake-judge" and results["aligner"] == "fake/aligner-7b"
    assert [(d["dimension"], d["wins"], d["improvement"]) for d in results["dimensions"]] == [
        ("helpfulness", 4, 1.0),
        ("harmlessness", 4, 1.0),
        ("honesty", 4, 1.0),
    ]
    assert len(tgi_server.script.requests) == 4
    assert "| harmlessness | 4 | 0 | 0 | 0 | 0 | +1.000 |" in capsys.readouterr().out


def test_judge_none_via_the_main_entry_point(tgi_server: FakeServer, tmp_path: Path) -> None:
    data = write_eval_data(tmp_path / "data.jsonl", 3)
    out = tmp_path / "out"
    args = ["eval", "--data", str(data), "--out", str(out), "--aligner-url", tgi_server.url, "--judge-none"]
    assert main([*args, "--limit", "2"]) == 0
    results = read_results(out)
    assert results["dimensions"] == [] and results["items"] == 2 and results["reference"]["correction"]
    assert (out / "report.png").exists()


def test_failing_aligner_gives_status_1(tgi_server: FakeServer, tmp_path: Path) -> None:
    tgi_server.script.fail = [503, 503]
    data = write_eval_data(tmp_path / "data.jsonl", 2)
    argv = ["--data", str(data), "--out", str(tmp_path / "out"), "--aligner-url", tgi_server.url]
    assert run_eval_cli([*argv, "--judge-none", "--aligner-retries", "0"]) == 1
    assert len(read_results(tmp_path / "out")["aligner_failures"]) == 2
