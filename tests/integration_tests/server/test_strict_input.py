"""Strict input, TGI's way: every bad request is a 422 ``validation`` in TGI's error body (never a text/plain
500, never an exception's text), numbers and booleans are parsed as strictly as TGI's serde parser does, and
the smaller parity points (details, metric names, HEAD, trailing slashes, stalled bodies, authentication)
follow TGI. A tiny random Llama serves every request over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from langchain_aligner.server.engine import BatchingEngine
from tests.helpers.serving import metric_values, serve_tiny, sse_events

GENERATE_ROUTES = ["/generate", "/generate_stream", "/"]


@pytest.fixture(scope="module")
def served(tiny_llama_dir: Path) -> Iterator[tuple[str, BatchingEngine]]:
    with serve_tiny(tiny_llama_dir, request_body_timeout=0.5) as served:
        yield served


@pytest.fixture
def url(served: tuple[str, BatchingEngine]) -> str:
    """Base URL of the module's server (tiny Llama, 64 input / 128 total tokens, 0.5 s to send a body)."""
    return served[0]


def post_raw(client: httpx.Client, route: str, body: str) -> httpx.Response:
    """POST ``body`` as it is written (JSON's ``NaN``, lone surrogate escapes and big integers included)."""
    return client.post(route, content=body.encode(), headers={"content-type": "application/json"})


def assert_validation_error(response: httpx.Response, message: str = "") -> None:
    """``response`` is TGI's 422: a JSON ``validation`` error whose text starts as TGI's does."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error_type"] == "validation"
    assert response.json()["error"].startswith("Input validation error: ")
    assert message in response.json()["error"]


# -- 6. no unhandled exception -----------------------------------------------------------------------------


UNPARSEABLE = [
    ("/generate", '{"inputs": "hi", "parameters": {"repetition_penalty": NaN}}'),
    ("/generate", '{"inputs": "hi", "parameters": {"temperature": NaN}}'),
    ("/generate", '{"inputs": "a lone \\ud800 surrogate"}'),
    ("/generate", '{"inputs": "hi", "parameters": {"stop": ["\\udc00"]}}'),
    ("/generate", '{"inputs": "hi", "parameters": {"do_sample": true, "seed": 18446744073709551616}}'),
    ("/generate_stream", '{"inputs": "hi", "parameters": {"repetition_penalty": NaN}}'),
    ("/generate_stream", '{"inputs": "\\ud800"}'),
    ("/", '{"inputs": "hi", "parameters": {"temperature": NaN}, "stream": true}'),
    ("/tokenize", '{"inputs": "\\ud800"}'),
    ("/v1/completions", '{"prompt": "\\ud800"}'),
    ("/v1/completions", '{"prompt": "hi", "temperature": 1, "seed": 18446744073709551616}'),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "\\ud800"}]}'),
    ("/v1/chat/completions", '{"messages":[{"role":"user","content":[{"type":"text","text":"\\udc00"}]}]}'),
]


@pytest.mark.parametrize(("route", "body"), UNPARSEABLE)
def test_values_that_crashed_the_server_are_tgis_422(url: str, route: str, body: str) -> None:
    with httpx.Client(base_url=url) as client:
        refused = post_raw(client, route, body)
        # The connection stays usable: the same client gets an answer on it.
        after = client.post("/tokenize", json={"inputs": "Edit"})
    assert_validation_error(refused)
    assert refused.headers.get("connection") != "close"
    assert after.status_code == 200


def test_an_unexpected_error_is_a_tgi_500_that_names_no_exception(
    tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve_tiny(tiny_llama_dir) as (url, engine):

        def broken_tokenize(text: str) -> list[tuple[int, str, int, int]]:
            raise KeyError("secret internals")

        monkeypatch.setattr(engine, "tokenize", broken_tokenize)
        with httpx.Client(base_url=url) as client:
            failed = client.post("/tokenize", json={"inputs": "Edit"})
            after = client.post("/generate", json={"inputs": "Edit", "parameters": {"max_new_tokens": 2}})
    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/json"
    assert failed.json() == {"error": "Internal server error", "error_type": "internal"}
    assert failed.headers["connection"] == "close"  # the server says it drops the connection
    assert after.status_code == 200


# -- 7. strict types -----------------------------------------------------------------------------------------


LAX_PARAMETERS = [
    '"temperature": Infinity',
    '"temperature": -Infinity',
    '"temperature": 1e999',
    '"repetition_penalty": 1e999',
    '"max_new_tokens": "5"',
    '"max_new_tokens": 5.0',
    '"max_new_tokens": true',
    '"top_k": 2.0',
    '"seed": "3"',
    '"do_sample": "true"',
    '"do_sample": 1',
    '"details": 1',
    '"stop": "a"',
    '"top_p": true',
]


@pytest.mark.parametrize("parameter", LAX_PARAMETERS)
@pytest.mark.parametrize("route", GENERATE_ROUTES)
def test_lax_values_are_refused(url: str, route: str, parameter: str) -> None:
    with httpx.Client(base_url=url) as client:
        assert_validation_error(post_raw(client, route, f'{{"inputs": "hi", "parameters": {{{parameter}}}}}'))


LAX_OPENAI_FIELDS = ['"max_tokens": "5"', '"max_tokens": 5.0', '"temperature": Infinity', '"top_p": 1e999']


@pytest.mark.parametrize("fields", [*LAX_OPENAI_FIELDS, '"stream": 1', '"seed": true'])
def test_lax_openai_values_are_refused(url: str, fields: str) -> None:
    with httpx.Client(base_url=url) as client:
        assert_validation_error(post_raw(client, "/v1/completions", f'{{"prompt": "hi", {fields}}}'))
        chat = f'{{"messages": [{{"role": "user", "content": "hi"}}], {fields}}}'
        assert_validation_error(post_raw(client, "/v1/chat/completions", chat))


def test_integral_floats_are_numbers(url: str) -> None:
    """An integer where a float is expected is fine, as in TGI (serde reads ``1`` as ``1.0``)."""
    body = {"inputs": "Edit", "parameters": {"temperature": 1, "repetition_penalty": 2, "max_new_tokens": 2}}
    assert httpx.post(f"{url}/generate", json=body).status_code == 200


# -- 8. decoder_input_details on a stream --------------------------------------------------------------------


@pytest.mark.parametrize(("route", "extra"), [("/generate_stream", {}), ("/", {"stream": True})])
def test_decoder_input_details_on_a_stream_is_refused(url: str, route: str, extra: dict[str, Any]) -> None:
    body = {"inputs": "Edit", "parameters": {"decoder_input_details": True, "max_new_tokens": 2}, **extra}
    response = httpx.post(f"{url}{route}", json=body)
    message = "`decoder_input_details` == true is not supported when streaming tokens"
    assert_validation_error(response, message)


# -- 9. parity -----------------------------------------------------------------------------------------------


def test_details_are_off_by_default_and_omitted(url: str) -> None:
    def generate(**parameters: Any) -> dict[str, Any]:
        body = {"inputs": "Edit", "parameters": {"max_new_tokens": 2, **parameters}}
        return dict(httpx.post(f"{url}/generate", json=body).json())

    assert "details" not in generate()
    assert "details" not in generate(details=False)
    assert generate(details=True)["details"]["generated_tokens"] == 2
    # As on TGI, asking for the prompt's details asks for details.
    assert len(generate(decoder_input_details=True)["details"]["prefill"]) > 0
    stream = {"inputs": "Edit", "parameters": {"max_new_tokens": 2}}
    assert sse_events(httpx.post(f"{url}/generate_stream", json=stream))[-1]["details"] is None


def test_metrics_have_tgis_names(url: str) -> None:
    httpx.post(f"{url}/generate", json={"inputs": "Edit", "parameters": {"max_new_tokens": 2}})
    httpx.post(f"{url}/generate", json={"inputs": "Edit " * 100})
    values = metric_values(url)
    assert values["tgi_request_count"] >= 2
    assert values["tgi_request_success"] >= 1
    assert values["tgi_request_failure{err=validation}"] >= 1
    assert not [name for name in values if name.startswith("tgi_") and "_total" in name]


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/generate", '{"inputs": 5}'),
        ("/generate_stream", '{"inputs": "hi", "parameters": {"max_new_tokens": "5"}}'),
        ("/v1/completions", '{"prompt": "hi", "temperature": NaN}'),
        ("/generate", "{not json"),
    ],
)
def test_requests_refused_while_parsing_are_counted(url: str, route: str, body: str) -> None:
    before = metric_values(url)
    with httpx.Client(base_url=url) as client:
        assert_validation_error(post_raw(client, route, body))
    after = metric_values(url)
    for name in ("tgi_request_failure{err=validation}", "tgi_request_count"):
        assert after.get(name, 0) - before.get(name, 0) == 1


@pytest.mark.parametrize("route", ["/health", "/info", "/metrics", "/v1/models"])
def test_head_answers_like_get(url: str, route: str) -> None:
    head = httpx.head(f"{url}{route}")
    assert head.status_code == 200
    assert head.content == b""


def test_a_trailing_slash_is_not_redirected(url: str) -> None:
    response = httpx.post(f"{url}/generate/", json={"inputs": "Edit"})
    assert response.status_code == 404
    assert response.json()["error_type"] == "not_found"


def test_a_body_shorter_than_its_content_length_times_out(url: str) -> None:
    host, port = httpx.URL(url).host, httpx.URL(url).port
    with socket.create_connection((host, port)) as sock:
        sock.settimeout(60)  # guards the test against a hang; the server answers after 0.5 s
        head = f"POST /generate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{head}Content-Length: 100\r\n\r\n".encode() + b'{"inputs": ')
        received = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            received += chunk
    status, _, rest = received.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert b"connection: close" in rest.lower()
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error_type"] == "request_timeout"


# -- 10. authentication --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_url(tiny_llama_dir: Path) -> Iterator[str]:
    """A server that requires ``Bearer s3cret`` (its body limit: 200 bytes)."""
    with serve_tiny(tiny_llama_dir, api_key="s3cret", max_request_bytes=200) as (url, _):
        yield url


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "BEARER s3cret", "Bearer  s3cret"])
def test_the_bearer_scheme_is_case_insensitive(keyed_url: str, header: str) -> None:
    body = {"inputs": "Edit", "parameters": {"max_new_tokens": 2}}
    response = httpx.post(f"{keyed_url}/generate", json=body, headers={"authorization": header})
    assert response.status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer S3CRET", "Basic s3cret", "Bearer", "Bearer s3cret x"])
@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": "Edit", "parameters": {"max_new_tokens": 2}}',
        b"{not json",
        b'{"inputs": "' + b"x" * 300 + b'"}',
    ],
)
def test_the_key_is_checked_before_the_body(keyed_url: str, header: str | None, body: bytes) -> None:
    headers = {"content-type": "application/json", **({"authorization": header} if header else {})}
    response = httpx.post(f"{keyed_url}/generate", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error_type"] == "authentication"
    assert response.headers["www-authenticate"] == "Bearer"


def test_info_metrics_models_and_health_are_open_as_on_tgi(keyed_url: str) -> None:
    for route in ("/health", "/info", "/metrics", "/v1/models"):
        assert httpx.get(f"{keyed_url}{route}").status_code == 200
    for route in (*GENERATE_ROUTES, "/tokenize", "/v1/completions", "/v1/chat/completions"):
        assert httpx.post(f"{keyed_url}{route}", json={}).status_code == 401
