"""The server under bad neighbours (issue 10): a poison request fails alone, abandoned requests free their
rows, a signal drains the server, oversized inputs neither stall others nor leak memory.

Everything runs on the tiny random Llama over real HTTP on 127.0.0.1. Progress and latency are compared as
orderings or ratios, never against wall-clock thresholds.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import uvicorn

from langchain_aligner.models import load_model_and_tokenizer
from langchain_aligner.server.app import DEFAULT_MAX_REQUEST_BYTES, create_app
from langchain_aligner.server.engine import BatchingEngine
from langchain_aligner.server.shutdown import LAST_WRITES_TIMEOUT, DrainingServer
from tests.helpers.engine import hold_decoding
from tests.helpers.serving import before_forward, gated, serve_tiny, sse_events


def wait_until(condition: Callable[[], bool], what: str, bound_s: float = 120) -> None:
    """Poll until ``condition()`` holds; ``bound_s`` only keeps a broken server from hanging the suite."""
    deadline = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def post_and_stay(url: str, route: str, body: dict[str, Any]) -> socket.socket:
    """Send a POST request on a raw connection and return it unread: closing it is the client leaving."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    head = f"POST {route} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    connection = socket.create_connection((host, int(port)))
    connection.sendall(f"{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return connection


# -- isolation: a poison request fails only itself -----------------------------------------------------------


async def test_a_poison_temperature_is_refused_and_its_prefill_neighbours_finish(
    tiny_llama_dir: Path,
) -> None:
    gate = threading.Event()  # the worker is held in the first request's prefill while the others arrive
    with serve_tiny(tiny_llama_dir, wrap_forward=gated(gate)) as (url, engine):
        good = {"inputs": "Edit the", "parameters": {"max_new_tokens": 6}}
        poison = {"inputs": "Edit the", "parameters": {"temperature": 1e-45, "max_new_tokens": 6}}
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            first = asyncio.ensure_future(client.post("/generate", json=good))
            while engine.in_flight < 1:
                await asyncio.sleep(0.01)
            others = [asyncio.ensure_future(client.post("/generate", json=good)) for _ in range(5)]
            while engine.in_flight < 6:
                await asyncio.sleep(0.01)
            refused = asyncio.ensure_future(client.post("/generate", json=poison))
            while engine.in_flight < 7 and not refused.done():
                await asyncio.sleep(0.01)
            gate.set()  # the five and the poison (if it got in) are prefilled together
            answers = await asyncio.gather(first, *others)
            poisoned = await refused
    assert poisoned.status_code == 422
    assert poisoned.json()["error_type"] == "validation"
    assert "`temperature` must be a finite number >= 1.17549e-38" in poisoned.json()["error"]
    assert [a.status_code for a in answers] == [200] * 6
    assert len({a.json()["generated_text"] for a in answers}) == 1  # greedy: the same answer in any batch


# -- isolation: large inputs are tokenized once, off the event loop, or not at all ---------------------------


def test_prompts_are_tokenized_once_and_off_the_event_loop(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve_tiny(tiny_llama_dir) as (url, engine):
        tokenizer_class, calls = type(engine.tokenizer), []
        tokenize = tokenizer_class.__call__

        def recorded(self: Any, text: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
                calls.append((text, "event loop"))
            except RuntimeError:
                calls.append((text, "worker thread"))
            return tokenize(self, text, *args, **kwargs)

        monkeypatch.setattr(tokenizer_class, "__call__", recorded)
        requests = [
            ("/generate", {"inputs": "Edit one", "parameters": {"max_new_tokens": 2}}),
            ("/generate", {"inputs": "Edit two"}),  # max_new_tokens: what fits, known once tokenized
            ("/generate_stream", {"inputs": "Edit three", "parameters": {"max_new_tokens": 2}}),
            ("/v1/completions", {"prompt": "Edit four", "max_tokens": 2}),
            ("/v1/completions", {"prompt": "Edit five"}),
            ("/v1/chat/completions", {**CHAT, "max_tokens": 2}),
            ("/tokenize", {"inputs": "Edit six"}),
        ]
        answers = [httpx.post(f"{url}{route}", json=body, timeout=120) for route, body in requests]
        monkeypatch.undo()
    assert [a.status_code for a in answers] == [200] * len(requests)
    assert answers[1].json()["generated_text"] is not None
    assert len(calls) == len(requests)  # one tokenization per request
    assert {place for _, place in calls} == {"worker thread"}


def test_oversized_inputs_stall_neither_health_nor_a_running_stream(tiny_llama_dir: Path) -> None:
    oversized = "Edit the answer. " * (600_000 // 17)
    slow_decode = before_forward(lambda call: time.sleep(0.02) if call > 1 else None)  # a stream that lasts
    with serve_tiny(
        tiny_llama_dir, wrap_forward=slow_decode, max_request_bytes=DEFAULT_MAX_REQUEST_BYTES
    ) as (url, engine):
        started = time.perf_counter()
        engine.tokenizer(oversized)
        tokenizing = time.perf_counter() - started  # what one of them costs the thread that tokenizes it
        arrivals: list[float] = []

        def read_stream() -> None:
            body = {"inputs": "Edit the", "parameters": {"max_new_tokens": 120}}
            with httpx.stream("POST", f"{url}/generate_stream", json=body, timeout=300) as response:
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        arrivals.append(time.perf_counter())

        reader = threading.Thread(target=read_stream)
        reader.start()
        wait_until(lambda: len(arrivals) >= 2, "the stream runs")
        refusals: list[httpx.Response] = []
        senders = [
            threading.Thread(
                target=lambda: refusals.append(
                    httpx.post(f"{url}/generate", json={"inputs": oversized}, timeout=300)
                )
            )
            for _ in range(3)
        ]
        window_start = time.perf_counter()
        for sender in senders:
            sender.start()
        health: list[float] = []
        while any(sender.is_alive() for sender in senders) or not health:
            asked = time.perf_counter()
            assert httpx.get(f"{url}/health", timeout=300).status_code == 200
            health.append(time.perf_counter() - asked)
        for sender in senders:
            sender.join()
        window_end = time.perf_counter()
        reader.join()
    assert [r.status_code for r in refusals] == [422] * 3
    assert arrivals[0] < window_start and arrivals[-1] > window_end  # the stream ran all along
    pairs = zip(arrivals, arrivals[1:], strict=False)
    gaps = [b - a for a, b in pairs if b > window_start and a < window_end]
    # A loop that tokenized them would stall both for at least one tokenization each; ratios, not seconds.
    assert max(health) / tokenizing < 0.5
    assert max(gaps, default=0.0) / tokenizing < 0.5


def test_rejected_oversized_inputs_leave_the_servers_memory_flat(tiny_llama_dir: Path) -> None:
    oversized = {"inputs": "Edit the answer. " * (1_900_000 // 17)}  # the size, under the 2 MB limit
    soak = 8
    with serve_command(tiny_llama_dir) as (url, process), httpx.Client(base_url=url, timeout=300) as client:

        def rejected() -> bool:
            return client.post("/generate", json=oversized).status_code == 422

        server = psutil.Process(process.pid)
        assert all(rejected() for _ in range(3))  # warm-up: the allocator's pools settle
        before = server.memory_info().rss
        assert all(rejected() for _ in range(soak))
        grown = server.memory_info().rss - before
    # Each such input used to keep about 15 times its size (25-30 MB); allow half its size each, on average.
    assert grown < soak * len(oversized["inputs"]) / 2


# -- abandoned work: a client that leaves frees its row ------------------------------------------------------

CHAT = {"messages": [{"role": "user", "content": "Edit the"}]}


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/generate", {"inputs": "Edit the", "parameters": {"max_new_tokens": 100}}),
        ("/", {"inputs": "Edit the", "parameters": {"max_new_tokens": 100}}),
        ("/v1/completions", {"prompt": "Edit the", "max_tokens": 100}),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 100}),
    ],
)
def test_a_non_streaming_client_that_leaves_frees_its_row(
    tiny_llama_dir: Path, route: str, body: dict[str, Any]
) -> None:
    gate = threading.Event()  # the first prefill runs, then the model waits: nothing can finish by itself
    with serve_tiny(tiny_llama_dir, wrap_forward=gated(gate, free_calls=1), max_batch_size=2) as (
        url,
        engine,
    ):
        try:
            leaving = [post_and_stay(url, route, body) for _ in range(2)]
            wait_until(lambda: engine.in_flight == 2, "both requests admitted")
            for connection in leaving:
                connection.close()
            wait_until(
                lambda: engine.in_flight == 0, "the abandoned requests dropped while the model is held"
            )
        finally:
            gate.set()
        # With two rows, this one runs only once the abandoned requests have left the batch.
        after = httpx.post(
            f"{url}/generate", json={"inputs": "Edit", "parameters": {"max_new_tokens": 3}}, timeout=120
        )
        stats = engine.stats
    assert after.status_code == 200
    assert (stats.cancelled, stats.finished) == (2, 1)


# -- shutdown: a signal drains the server --------------------------------------------------------------------

GENERATE = {"inputs": "Edit the", "parameters": {"max_new_tokens": 20, "details": True}}
COMPLETE = {"prompt": "Edit the", "max_tokens": 20, "stream": True}


def serve_until_signalled(
    tiny_llama_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    graceful_timeout: float,
    scenario: Callable[[str, BatchingEngine, threading.Event], Coroutine[Any, Any, Any]],
) -> tuple[Any, list[int]]:
    """Serve the tiny model as ``serve`` does (a :class:`DrainingServer`, signal handlers and all) in the
    main thread while ``scenario(url, engine, gate)`` runs in another and sends the signal. Prefills run; the
    model decodes only once ``scenario`` sets ``gate``. Returns its result and the signals the server
    re-raised on exit."""
    model, tokenizer = load_model_and_tokenizer(tiny_llama_dir)
    gate = hold_decoding(model, monkeypatch)
    engine = BatchingEngine(model, tokenizer, model_id="tiny", max_input_tokens=64, max_total_tokens=128)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        create_app(engine), log_level="warning", timeout_graceful_shutdown=LAST_WRITES_TIMEOUT
    )
    server = DrainingServer(config, engine, graceful_timeout)
    outcome: dict[str, Any] = {}

    def client() -> None:
        try:
            wait_until(lambda: server.started, "the server started")
            outcome["result"] = asyncio.run(scenario(url, engine, gate))
        except BaseException as error:
            outcome["error"] = error
        finally:  # never leave the server (or its model) waiting for a scenario that failed
            gate.set()
            server.should_exit = True

    reraised: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda sig, _: reraised.append(sig))
    thread = threading.Thread(target=client)
    try:
        thread.start()
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        thread.join()
        sock.close()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"], reraised


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Let the scenario's loop run until ``condition()`` holds (the test's own timeout bounds it)."""
    while not await condition():
        await asyncio.sleep(0.01)


async def in_flight_then_signal(
    client: httpx.AsyncClient, engine: BatchingEngine
) -> list[asyncio.Task[httpx.Response]]:
    """Start a TGI stream, an OpenAI stream and a ``/generate``, wait until each has its first token (then the
    model is held), and send SIGTERM to this process; returns the three responses to come."""
    requests = [
        asyncio.ensure_future(client.post("/generate_stream", json=GENERATE)),
        asyncio.ensure_future(client.post("/v1/completions", json=COMPLETE)),
        asyncio.ensure_future(client.post("/generate", json=GENERATE)),
    ]

    async def all_started() -> bool:
        return engine.stats.generated_tokens == 3

    await until(all_started)
    os.kill(os.getpid(), signal.SIGTERM)
    return requests


def test_a_signal_refuses_new_requests_and_lets_those_in_flight_finish(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(url: str, engine: BatchingEngine, gate: threading.Event) -> Any:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            responses = await in_flight_then_signal(client, engine)

            async def draining() -> bool:
                return (await client.get("/health")).status_code == 503

            await until(draining)
            refused = await client.post("/generate", json=GENERATE)
            health = await client.get("/health")
            gate.set()  # now the three can finish
            return refused, health, await asyncio.gather(*responses)

    (refused, health, (tgi_stream, openai_stream, answer)), reraised = serve_until_signalled(
        tiny_llama_dir, monkeypatch, 120, scenario
    )
    assert refused.status_code == 503
    assert refused.json() == {
        "error": "Server is shutting down: no new requests are accepted",
        "error_type": "unavailable",
    }
    assert health.json()["error_type"] == "healthcheck"
    last = sse_events(tgi_stream)[-1]
    assert last["details"]["generated_tokens"] == 20 and last["generated_text"] is not None
    assert sse_events(openai_stream)[-1] == "[DONE]"
    assert answer.status_code == 200 and answer.json()["details"]["generated_tokens"] == 20
    assert reraised == [signal.SIGTERM]  # and the server exited, as uvicorn does, with the signal


def test_requests_still_running_at_the_graceful_timeout_end_with_an_error(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(url: str, engine: BatchingEngine, gate: threading.Event) -> Any:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            responses = await in_flight_then_signal(client, engine)
            # The model stays held: none of the three can finish, whatever the timeout.
            return await asyncio.gather(*responses)

    (tgi_stream, openai_stream, answer), reraised = serve_until_signalled(
        tiny_llama_dir, monkeypatch, 0.1, scenario
    )
    for stream in (tgi_stream, openai_stream):
        assert stream.status_code == 200
        last = sse_events(stream)[-1]
        assert last["error_type"] == "generation"
        assert "the server shut down before the request finished" in last["error"]
    assert "[DONE]" not in sse_events(openai_stream)
    assert answer.status_code == 424
    assert "the server shut down before the request finished" in answer.json()["error"]
    assert reraised == [signal.SIGTERM]


@contextmanager
def serve_command(tiny_llama_dir: Path, *options: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run ``langchain-aligner serve`` on the tiny model (64 input / 256 total tokens); yield its URL and
    process once it is healthy. The process is killed on the way out if it still runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = Path(sys.executable).parent / "langchain-aligner"  # the installed console script
    command = [
        str(script),
        "--log-level",
        "WARNING",
        "serve",
        "--model",
        str(tiny_llama_dir),
        "--port",
        str(port),
    ]
    command += ["--max-input-tokens", "64", "--max-total-tokens", "256", "--max-batch-prefill-tokens", "256"]
    process = subprocess.Popen(
        [*command, *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is not None or _healthy(url), "the server answers", bound_s=300)
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health").status_code == 200
    except httpx.TransportError:
        return False


def test_serve_drains_its_streams_on_sigterm(tiny_llama_dir: Path) -> None:
    """``serve`` end to end: a stream running at SIGTERM ends with its last event, then the server exits."""
    body = {"inputs": "Edit", "parameters": {"max_new_tokens": 200, "details": True}}
    with serve_command(tiny_llama_dir, "--graceful-timeout", "300") as (url, process):
        with httpx.Client(base_url=url, timeout=120) as client:
            with client.stream("POST", "/generate_stream", json=body) as stream:
                lines = stream.iter_lines()
                first = next(line for line in lines if line.startswith("data:"))
                process.send_signal(signal.SIGTERM)  # while the stream runs (200 tokens)
                rest = [line for line in lines if line.startswith("data:")]
        process.wait(timeout=300)
    events = [json.loads(line[5:]) for line in [first, *rest]]
    assert events[-1]["details"]["generated_tokens"] == 200  # not cut after a token or two
    assert [e["index"] for e in events] == list(range(1, 201))
    assert process.returncode == -signal.SIGTERM
