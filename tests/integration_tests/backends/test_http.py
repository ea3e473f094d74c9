"""The TGI and OpenAI-compatible backends against real HTTP servers on 127.0.0.1 speaking their formats."""

from __future__ import annotations

import socket

import pytest
from huggingface_hub.errors import OfflineModeIsEnabled

from langchain_aligner import AlignerBackendError, AlignerTimeoutError, GenerationParams
from langchain_aligner.backends import (
    AlignerBackend,
    BackendKind,
    OpenAICompatBackend,
    TGIBackend,
    make_backend,
)
from langchain_aligner.backends.tgi import tgi_error
from langchain_aligner.testing.fake_servers import MODEL_ID, FakeServer, fake_correction, fake_tokens

PROMPT = "BEGINNING OF CONVERSATION: USER: Edit this: why | because ASSISTANT:"
FULL = " " + fake_correction(PROMPT)  # backends return the text as generated, leading space included


@pytest.fixture(params=["tgi", "openai"])
def served(request: pytest.FixtureRequest) -> tuple[AlignerBackend, FakeServer]:
    """Each HTTP backend with its fake server."""
    server: FakeServer = request.getfixturevalue(f"{request.param}_server")
    return make_backend(request.param, url=server.url, timeout=5), server


def test_generate_returns_text_and_token_counts(served: tuple[AlignerBackend, FakeServer]) -> None:
    backend, server = served
    generation = backend.generate(PROMPT, GenerationParams())
    assert generation.text == FULL
    assert generation.completion_tokens == len(fake_tokens(FULL))
    assert generation.model == MODEL_ID
    (request,) = server.script.requests
    assert (request.get("inputs") or request.get("prompt")) == PROMPT  # sent as is: no BOS added


async def test_generate_and_stream_report_the_same_token_counts(
    served: tuple[AlignerBackend, FakeServer],
) -> None:
    backend, _ = served
    params = GenerationParams()
    generated = [backend.generate(PROMPT, params), await backend.agenerate(PROMPT, params)]
    streamed = list(backend.stream(PROMPT, params))[-1].generation
    assert streamed is not None and streamed.prompt_tokens is not None
    for generation in generated:
        counts = (generation.prompt_tokens, generation.completion_tokens)
        assert counts == (streamed.prompt_tokens, streamed.completion_tokens)


async def test_agenerate_matches_generate(served: tuple[AlignerBackend, FakeServer]) -> None:
    backend, _ = served
    assert (await backend.agenerate(PROMPT, GenerationParams())).text == FULL


def test_stream_pieces_add_up_and_end_with_the_generation(served: tuple[AlignerBackend, FakeServer]) -> None:
    backend, _ = served
    deltas = list(backend.stream(PROMPT, GenerationParams()))
    assert "".join(d.text for d in deltas) == FULL
    assert len([d for d in deltas if d.text]) == len(fake_tokens(FULL))
    final = deltas[-1].generation
    assert final is not None and final.text == FULL
    assert final.prompt_tokens is not None and final.prompt_tokens >= len(fake_tokens(PROMPT))


async def test_astream_matches_stream(served: tuple[AlignerBackend, FakeServer]) -> None:
    backend, _ = served
    deltas = [d async for d in backend.astream(PROMPT, GenerationParams())]
    assert "".join(d.text for d in deltas) == FULL


@pytest.mark.parametrize("streaming", [False, True])
def test_stop_sequences_are_not_included(served: tuple[AlignerBackend, FakeServer], streaming: bool) -> None:
    backend, _ = served
    params = GenerationParams(stop=("END",))
    if streaming:
        text = "".join(d.text for d in backend.stream(PROMPT, params))
    else:
        text = backend.generate(PROMPT, params).text
    assert text == FULL[: FULL.index("END")]


def test_max_new_tokens_and_sampling_params_are_sent(served: tuple[AlignerBackend, FakeServer]) -> None:
    backend, server = served
    params = GenerationParams(max_new_tokens=3, do_sample=True, temperature=0.7, top_p=0.9, top_k=5, seed=1)
    assert backend.generate(PROMPT, params).text == "".join(fake_tokens(FULL)[:3])
    (request,) = server.script.requests
    body = request.get("parameters") or request
    assert body["temperature"] == 0.7 and body["top_p"] == 0.9 and body["top_k"] == 5 and body["seed"] == 1


def test_openai_greedy_is_temperature_zero(openai_server: FakeServer) -> None:
    OpenAICompatBackend(openai_server.url + "/v1").generate(PROMPT, GenerationParams(repetition_penalty=1.1))
    (request,) = openai_server.script.requests
    assert request["temperature"] == 0.0
    assert request["repetition_penalty"] == 1.1  # extra_body, as vLLM reads it
    assert request["model"] == MODEL_ID  # found in /v1/models


def test_tgi_greedy_is_do_sample_false(tgi_server: FakeServer) -> None:
    TGIBackend(tgi_server.url).generate(PROMPT, GenerationParams())
    parameters = tgi_server.script.requests[0]["parameters"]
    assert (
        parameters["do_sample"] is False and "temperature" not in parameters and parameters["details"] is True
    )


def test_input_limit_and_token_count_come_from_the_server(served: tuple[AlignerBackend, FakeServer]) -> None:
    backend, server = served
    server.script.max_input_tokens, server.script.max_total_tokens = 77, 78  # TGI's usual sizing
    if isinstance(backend, TGIBackend):
        assert (backend.max_input_tokens(), backend.max_total_tokens()) == (77, 78)
        assert backend.prompt_limit(16) == 78 - 16 and backend.prompt_limit(1) == 77
    else:  # max_model_len is the context length: prompt and completion together
        assert (backend.max_input_tokens(), backend.max_total_tokens()) == (None, 77)
        assert backend.prompt_limit(16) == 77 - 16
    count = backend.count_tokens(PROMPT)
    assert count is not None and count >= len(fake_tokens(PROMPT))


@pytest.mark.parametrize(("status", "retryable"), [(422, False), (424, False), (429, True), (500, True)])
@pytest.mark.parametrize("streaming", [False, True])
def test_http_errors_map_to_backend_errors(
    served: tuple[AlignerBackend, FakeServer], status: int, retryable: bool, streaming: bool
) -> None:
    backend, server = served
    server.script.fail = [status]
    with pytest.raises(AlignerBackendError) as caught:
        if streaming:
            list(backend.stream(PROMPT, GenerationParams()))
        else:
            backend.generate(PROMPT, GenerationParams())
    assert caught.value.status == status
    assert caught.value.retryable is retryable


async def test_async_http_errors_map_to_backend_errors(served: tuple[AlignerBackend, FakeServer]) -> None:
    backend, server = served
    server.script.fail = [429]
    with pytest.raises(AlignerBackendError) as caught:
        await backend.agenerate(PROMPT, GenerationParams())
    assert caught.value.status == 429 and caught.value.retryable


def test_tgi_error_types_are_kept(tgi_server: FakeServer) -> None:
    tgi_server.script.fail = [422]
    with pytest.raises(AlignerBackendError) as caught:
        TGIBackend(tgi_server.url).generate(PROMPT, GenerationParams())
    assert caught.value.error_type == "validation"


@pytest.mark.parametrize("streaming", [False, True])
async def test_error_event_mid_stream_raises_after_the_first_pieces(
    served: tuple[AlignerBackend, FakeServer], streaming: bool
) -> None:
    backend, server = served
    server.script.stream_error_after = 2
    received: list[str] = []
    with pytest.raises(AlignerBackendError):
        if streaming:
            async for delta in backend.astream(PROMPT, GenerationParams()):
                received.append(delta.text)
        else:
            for delta in backend.stream(PROMPT, GenerationParams()):
                received.append(delta.text)
    assert "".join(received) == "".join(fake_tokens(FULL)[:2])


def test_timeout_raises_a_timeout_error(served: tuple[AlignerBackend, FakeServer]) -> None:
    kind, server = _kind(served[0]), served[1]
    backend = make_backend(kind, url=server.url, timeout=0.2)
    server.script.delay = 2.0
    with pytest.raises(AlignerTimeoutError) as caught:
        backend.generate(PROMPT, GenerationParams())
    assert caught.value.retryable


def test_connection_refused_is_retryable(served: tuple[AlignerBackend, FakeServer]) -> None:
    backend = make_backend(_kind(served[0]), url=f"http://127.0.0.1:{_closed_port()}", model="m", timeout=2)
    with pytest.raises(AlignerBackendError) as caught:
        backend.generate(PROMPT, GenerationParams())
    assert caught.value.retryable and caught.value.status is None


def _kind(backend: AlignerBackend) -> BackendKind:
    return "tgi" if isinstance(backend, TGIBackend) else "openai"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("call", ["generate", "agenerate", "stream", "astream"])
async def test_a_200_that_is_not_a_generation_is_a_backend_error(
    served: tuple[AlignerBackend, FakeServer], call: str
) -> None:
    backend, server = served
    server.script.raw_body = "<html><body>502 Bad Gateway</body></html>"
    with pytest.raises(AlignerBackendError, match="not a generation|ended before"):
        if call == "generate":
            backend.generate(PROMPT, GenerationParams())
        elif call == "agenerate":
            await backend.agenerate(PROMPT, GenerationParams())
        elif call == "stream":
            list(backend.stream(PROMPT, GenerationParams()))
        else:
            [delta async for delta in backend.astream(PROMPT, GenerationParams())]


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """``HF_HUB_OFFLINE=1``, as huggingface_hub reads it at import (its constant), and in the environment."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.mark.usefixtures("hub_offline")
async def test_tgi_works_with_hf_hub_offline(tgi_server: FakeServer) -> None:
    backend = TGIBackend(tgi_server.url, timeout=5)
    assert backend.max_input_tokens() == 4096 and backend.model_name == MODEL_ID  # /info
    assert backend.count_tokens(PROMPT) == 1 + len(fake_tokens(PROMPT))  # /tokenize
    assert backend.generate(PROMPT, GenerationParams()).text == FULL
    assert (await backend.agenerate(PROMPT, GenerationParams())).text == FULL
    assert "".join(d.text for d in backend.stream(PROMPT, GenerationParams())) == FULL
    assert "".join([d.text async for d in backend.astream(PROMPT, GenerationParams())]) == FULL
    # What huggingface_hub raises offline is a backend error too, should a request still meet its guard.
    assert isinstance(tgi_error(OfflineModeIsEnabled("offline")), AlignerBackendError)


@pytest.mark.usefixtures("hub_offline")
@pytest.mark.parametrize("streaming", [False, True])
async def test_tgi_error_bodies_are_read_with_hf_hub_offline(tgi_server: FakeServer, streaming: bool) -> None:
    tgi_server.script.fail = [422]
    with pytest.raises(AlignerBackendError) as caught:
        if streaming:
            [d async for d in TGIBackend(tgi_server.url).astream(PROMPT, GenerationParams())]
        else:
            await TGIBackend(tgi_server.url).agenerate(PROMPT, GenerationParams())
    assert caught.value.status == 422 and caught.value.error_type == "validation"
