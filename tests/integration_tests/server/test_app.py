"""The server app over real HTTP: TGI's error contract (422/424/429/401/413), metrics, tokenize, health, the
in-stream error event and the ``langchain-aligner serve`` command. A tiny random Llama runs behind it."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from langchain_aligner import AlignerRunnable
from langchain_aligner.server.cli import API_KEY_ENV
from langchain_aligner.server.engine import BatchingEngine
from tests.helpers.serving import failing_after, gated, metric_values, serve_tiny, sse_events


@pytest.fixture(scope="module")
def served(tiny_llama_dir: Path) -> Iterator[tuple[str, BatchingEngine]]:
    with serve_tiny(tiny_llama_dir) as served:
        yield served


@pytest.fixture
def url(served: tuple[str, BatchingEngine]) -> str:
    """Base URL of the module's server (tiny Llama, 64 input / 128 total tokens)."""
    return served[0]


def test_generate_is_the_models_greedy_output(served: tuple[str, BatchingEngine]) -> None:
    url, engine = served
    prompt = "Edit the following Question-Answer pair"
    parameters = {"max_new_tokens": 8, "details": True}
    body = httpx.post(f"{url}/generate", json={"inputs": prompt, "parameters": parameters}).json()
    ids = engine.tokenizer(prompt, return_tensors="pt")["input_ids"]
    expected = engine.model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=None)  # type: ignore[operator]
    assert body["generated_text"] == engine.tokenizer.decode(expected[0, ids.shape[1] :])
    assert [t["id"] for t in body["details"]["tokens"]] == expected[0, ids.shape[1] :].tolist()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": "hi", "parameters": {"top_p": 1.0}}, "`top_p` must be > 0.0 and < 1.0"),
        ({"inputs": "hi", "parameters": {"temperature": 0}}, "`temperature` must be strictly positive"),
        ({"inputs": "hi", "parameters": {"max_new_tokens": 0}}, "`max_new_tokens` must be strictly positive"),
        ({"inputs": "hi", "parameters": {"stop": ["a"] * 5}}, "`stop` supports up to 4 stop sequences"),
        ({"inputs": "hi", "parameters": {"grammar": {"type": "regex", "value": "a"}}}, "`grammar` is not"),
        ({"inputs": "hi", "parameters": {"best_of": 2}}, "`best_of` must be > 0 and <= 1. Given: 2"),
        ({"inputs": "Edit " * 100}, "`inputs` must have less than 64 tokens"),
        ({"inputs": "hi", "parameters": {"max_new_tokens": 500}}, "`max_new_tokens` must be <= 128"),
        ({"inputs": ""}, "`inputs` cannot be empty"),
        ({"parameters": {}}, "`inputs`: Field required"),
    ],
)
@pytest.mark.parametrize("route", ["/generate", "/generate_stream", "/"])
def test_invalid_requests_get_tgis_422(url: str, route: str, body: dict[str, Any], message: str) -> None:
    response = httpx.post(f"{url}{route}", json=body)
    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"
    assert response.json()["error"].startswith("Input validation error: ")
    assert message in response.json()["error"]


def test_malformed_json_is_a_validation_error(url: str) -> None:
    response = httpx.post(
        f"{url}/generate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/completions", {"prompt": "Edit " * 100}),
        ("/v1/completions", {"prompt": ["a", "b"]}),
        ("/v1/completions", {"prompt": "hi", "n": 2}),
        ("/v1/completions", {"prompt": "hi", "logprobs": 2}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "temperature": -1}),
        ("/v1/chat/completions", {"messages": []}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "tools": [{"a": 1}]}),
    ],
)
def test_invalid_openai_requests_get_422(url: str, route: str, body: dict[str, Any]) -> None:
    response = httpx.post(f"{url}{route}", json=body)
    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"


def test_chat_without_a_chat_template_is_refused(tiny_llama_dir: Path) -> None:
    with serve_tiny(tiny_llama_dir, chat_template=None) as (url, _):
        response = httpx.post(
            f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )
    assert response.status_code == 422
    assert "no chat template" in response.json()["error"]


def test_sampling_parameters_turn_sampling_on_and_the_seed_repeats(url: str) -> None:
    parameters = {"top_k": 50, "seed": 7, "max_new_tokens": 6, "details": True}
    body = {"inputs": "Edit the", "parameters": parameters}
    first, second = (httpx.post(f"{url}/generate", json=body).json() for _ in range(2))
    assert first == second
    assert first["details"]["seed"] == 7
    greedy_body = {"inputs": "Edit the", "parameters": {"max_new_tokens": 6, "details": True}}
    greedy = httpx.post(f"{url}/generate", json=greedy_body)
    assert greedy.json()["details"]["seed"] is None


def test_return_full_text_and_no_details(url: str) -> None:
    body = {
        "inputs": "Edit the",
        "parameters": {"max_new_tokens": 3, "return_full_text": True, "details": False},
    }
    answer = httpx.post(f"{url}/generate", json=body).json()
    assert answer["generated_text"].startswith("Edit the")
    assert "details" not in answer


async def test_overload_is_429_while_requests_are_held(tiny_llama_dir: Path) -> None:
    gate = threading.Event()
    with serve_tiny(tiny_llama_dir, wrap_forward=gated(gate), max_concurrent_requests=1) as (url, engine):
        body = {"inputs": "Edit the", "parameters": {"max_new_tokens": 2}}
        async with httpx.AsyncClient(base_url=url) as client:
            first = asyncio.create_task(client.post("/generate", json=body))
            while engine.in_flight < 1:
                await asyncio.sleep(0.01)
            refused = await client.post("/generate", json=body)
            refused_stream = await client.post("/generate_stream", json=body)
            refused_openai = await client.post("/v1/completions", json={"prompt": "Edit the"})
            gate.set()
            accepted = await first
        failures = metric_values(url)
    for response in (refused, refused_stream, refused_openai):
        assert response.status_code == 429
        assert response.json()["error_type"] == "overloaded"
    assert accepted.status_code == 200
    assert failures["tgi_request_failure{err=overloaded}"] == 3
    assert failures["aligner_engine_rejected_total"] == 3


def test_client_leaving_a_stream_frees_its_request(tiny_llama_dir: Path) -> None:
    gate = threading.Event()  # the prefill runs, then the model waits: the stream cannot finish by itself
    with serve_tiny(tiny_llama_dir, wrap_forward=gated(gate, free_calls=1)) as (url, engine):
        body = {"inputs": "Edit the", "parameters": {"max_new_tokens": 50}}
        with httpx.stream("POST", f"{url}/generate_stream", json=body) as response:
            # Keep the line iterator: dropping it closes the connection, which is the disconnect tested below.
            lines = response.iter_lines()
            first = next(lines)  # the first token comes before the second is allowed
            assert engine.in_flight == 1
        while engine.in_flight:
            time.sleep(0.01)
        gate.set()
        while not engine.stats.cancelled:
            time.sleep(0.01)
        stats = engine.stats
    assert first.startswith("data:")
    assert (stats.cancelled, stats.finished) == (1, 0)


def test_error_during_a_stream_is_an_event(tiny_llama_dir: Path) -> None:
    with serve_tiny(tiny_llama_dir, wrap_forward=failing_after(3)) as (url, _):
        body = {"inputs": "Edit the", "parameters": {"max_new_tokens": 10}}
        streamed = httpx.post(f"{url}/generate_stream", json=body)
        later = httpx.post(f"{url}/generate", json=body)
        later_stream = httpx.post(f"{url}/generate_stream", json=body)
    events = sse_events(streamed)
    assert streamed.status_code == 200
    assert [e["index"] for e in events[:-1]] == [1, 2, 3]  # every token generated before the failure
    assert events[-1]["error_type"] == "generation"
    assert "injected failure" in events[-1]["error"]
    # Once the model fails at the prefill, the error comes before any token: a plain 424.
    for response in (later, later_stream):
        assert response.status_code == 424
        assert response.json()["error_type"] == "generation"


def test_error_during_an_openai_stream_is_an_event(tiny_llama_dir: Path) -> None:
    with serve_tiny(tiny_llama_dir, wrap_forward=failing_after(2)) as (url, _):
        body = {"prompt": "Edit the", "max_tokens": 10, "stream": True}
        streamed = httpx.post(f"{url}/v1/completions", json=body)
    events = sse_events(streamed)
    assert events[-1]["error_type"] == "generation"
    assert "[DONE]" not in events


def test_api_key_guards_the_api_routes(tiny_llama_dir: Path) -> None:
    with serve_tiny(tiny_llama_dir, api_key="s3cret") as (url, _):
        body = {"inputs": "Edit the", "parameters": {"max_new_tokens": 2}}
        missing = httpx.post(f"{url}/generate", json=body)
        wrong = httpx.post(f"{url}/tokenize", json=body, headers={"authorization": "Bearer nope"})
        right = httpx.post(f"{url}/generate", json=body, headers={"authorization": "Bearer s3cret"})
        health = httpx.get(f"{url}/health")
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["error_type"] == "authentication"
        assert response.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 200
    assert health.status_code == 200


def test_request_body_over_the_limit_is_413(tiny_llama_dir: Path) -> None:
    with serve_tiny(tiny_llama_dir, max_request_bytes=200) as (url, _):
        big = {"inputs": "x" * 300}
        declared = httpx.post(f"{url}/generate", json=big)
        chunked = httpx.post(
            f"{url}/generate",
            content=iter([json.dumps(big).encode()[:150], json.dumps(big).encode()[150:]]),
            headers={"content-type": "application/json"},
        )
        small = httpx.post(f"{url}/generate", json={"inputs": "hi", "parameters": {"max_new_tokens": 2}})
    assert "content-length" not in chunked.request.headers
    for response in (declared, chunked):
        assert response.status_code == 413
        assert response.json()["error_type"] == "payload_too_large"
    assert small.status_code == 200


def test_metrics_count_requests_tokens_and_failures(url: str) -> None:
    before = metric_values(url)
    body = {"inputs": "Edit the", "parameters": {"max_new_tokens": 4}}
    httpx.post(f"{url}/generate", json=body)
    httpx.post(f"{url}/generate_stream", json=body)
    httpx.post(f"{url}/generate", json={"inputs": "Edit " * 100})
    after = metric_values(url)

    def delta(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert delta("tgi_request_count") == 3
    assert delta("tgi_request_success") == 2
    assert delta("tgi_request_failure{err=validation}") == 1
    assert delta("tgi_request_generated_tokens_sum") == 8
    assert delta("tgi_request_duration_count") == 2
    assert delta("aligner_engine_generated_tokens_total") == 8
    assert after["tgi_queue_size"] == 0


def test_tokenize_matches_the_tokenizer(served: tuple[str, BatchingEngine]) -> None:
    url, engine = served
    text = "Edit the answer"
    tokens = httpx.post(f"{url}/tokenize", json={"inputs": text}).json()
    assert [t["id"] for t in tokens] == engine.tokenizer(text)["input_ids"]
    assert "".join(t["text"] for t in tokens) == text
    assert all(text[t["start"] : t["stop"]] == t["text"] for t in tokens)


def test_health_info_and_unknown_routes(url: str) -> None:
    assert httpx.get(f"{url}/health").status_code == 200
    info = httpx.get(f"{url}/info").json()
    assert (info["model_id"], info["max_input_tokens"], info["max_total_tokens"]) == ("tiny-llama", 64, 128)
    missing = httpx.get(f"{url}/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error_type"] == "not_found"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_command_answers_generate(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    script = Path(sys.executable).parent / "langchain-aligner"  # the installed console script
    command = [str(script), "--log-level", "WARNING", "serve"]
    command += ["--model", str(tiny_llama_dir), "--port", str(port), "--max-input-tokens", "64"]
    command += ["--max-total-tokens", "128", "--max-batch-prefill-tokens", "256"]
    # The bearer token from the environment: the variable AlignerRunnable sends too.
    monkeypatch.setenv(API_KEY_ENV, "k")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, headers = f"http://127.0.0.1:{port}", {"authorization": "Bearer k"}
    try:
        deadline = time.monotonic() + 300  # a bound against hanging, not a performance check
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        body = {"inputs": "Edit the", "parameters": {"max_new_tokens": 3, "details": True}}
        answer = httpx.post(f"{url}/generate", json=body, headers=headers)
        info = httpx.get(f"{url}/info").json()  # open, as on TGI
        unauthorized = httpx.post(f"{url}/generate", json=body)
        aligner = AlignerRunnable(
            backend="tgi", url=url, template="Q: {question} A: {answer} C:", on_error="raise"
        )
        corrected = aligner.invoke({"question": "Why?", "answer": "Because."}, max_new_tokens=3)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    assert answer.status_code == 200
    assert answer.json()["details"]["generated_tokens"] == 3
    assert info["max_total_tokens"] == 128
    assert info["model_id"] == str(tiny_llama_dir)
    assert unauthorized.status_code == 401
    assert corrected.response_metadata["aligner_corrected"] is True
    assert corrected.response_metadata["token_usage"]["completion_tokens"] == 3
    assert process.returncode == 0
