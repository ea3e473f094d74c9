"""Conformance of ``langchain-aligner serve`` with TGI's HTTP contract and the OpenAI API.

Every route's answers (success, errors and each stream event) are validated against the response schemas
of TGI 3.3's OpenAPI document (``../shared/reference/tgi-openapi.json``), and the server is driven by the
real clients: huggingface_hub's ``InferenceClient``/``AsyncInferenceClient``, ``openai`` and the project's
own ``AlignerRunnable`` with the ``tgi`` and ``openai`` backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.errors import ValidationError as HubValidationError

from langchain_aligner import AlignerRunnable, GenerationParams
from langchain_aligner.backends import TransformersBackend
from langchain_aligner.server.engine import BatchingEngine
from tests.helpers.paths import SHARED
from tests.helpers.serving import failing_after, serve_tiny, sse_events

OPENAPI = SHARED / "reference" / "tgi-openapi.json"
PROMPT = "Edit the following Question-Answer pair"


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects as JSON Schema: ``nullable: true`` becomes "or null"."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {
        key: _json_schema(value) for key, value in node.items() if key not in ("nullable", "example")
    }
    return {"anyOf": [converted, {"type": "null"}]} if node.get("nullable") else converted


class OpenAPIContract:
    """TGI's OpenAPI document; :meth:`check` validates a response of a route against it."""

    def __init__(self, path: Path) -> None:
        self.document = json.loads(path.read_text())
        self.components = _json_schema(self.document["components"])

    def schema(self, route: str, method: str, status: int, media_type: str) -> dict[str, Any]:
        """The response schema for ``status`` and ``media_type`` (else the first media type listed)."""
        content = self.document["paths"][route][method]["responses"][str(status)]["content"]
        return dict(content.get(media_type, next(iter(content.values())))["schema"])

    def validate(self, instance: Any, schema: dict[str, Any]) -> None:
        validator = jsonschema.Draft202012Validator({**_json_schema(schema), "components": self.components})
        error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
        assert error is None, f"{error.message} at {error.json_path} in {instance}"

    def check(self, route: str, method: str, response: httpx.Response) -> list[Any]:
        """Validate ``response`` (a JSON body, or each event of a stream); return the bodies/events.

        In a stream, an error event is validated as the route's 424 body, TGI's ``ErrorResponse``.
        """
        media_type = response.headers["content-type"].split(";")[0]
        schema = self.schema(route, method, response.status_code, media_type)
        if media_type != "text/event-stream":
            self.validate(response.json(), schema)
            return [response.json()]
        events = sse_events(response)
        assert events, "an empty stream"
        for event in events:
            if event != "[DONE]":
                error_schema = self.schema(route, method, 424, media_type)
                self.validate(event, error_schema if "error" in event else schema)
        return events


@pytest.fixture(scope="module")
def contract() -> OpenAPIContract:
    return OpenAPIContract(OPENAPI)


@pytest.fixture(scope="module")
def served(printable_llama_dir: Path) -> Iterator[tuple[str, BatchingEngine]]:
    with serve_tiny(printable_llama_dir, max_input_tokens=192, max_total_tokens=256) as served:
        yield served


@pytest.fixture
def url(served: tuple[str, BatchingEngine]) -> str:
    """Base URL of a server with the printable tiny Llama (192 input / 256 total tokens, a chat template)."""
    return served[0]


# -- every route against the OpenAPI document --------------------------------------------------------------


GENERATE = {"inputs": PROMPT, "parameters": {"max_new_tokens": 5}}
DETAILS = {"max_new_tokens": 5, "details": True}
DETAILED = {
    "inputs": PROMPT,
    "parameters": {
        "max_new_tokens": 5,
        "decoder_input_details": True,
        "top_n_tokens": 2,
        "stop": ["zzz"],
        "seed": 3,
        "do_sample": True,
    },
}
STREAM_DETAILED = {  # a stream cannot have the prompt's details (TGI refuses decoder_input_details)
    "inputs": PROMPT,
    "parameters": {**DETAILED["parameters"], "decoder_input_details": False, "details": True},
}
TOO_LONG = {"inputs": "Edit " * 300}
CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Edit this"}]}

CASES = [
    ("/generate", GENERATE, 200),
    ("/generate", DETAILED, 200),
    ("/generate", {**GENERATE, "parameters": {"details": False, "max_new_tokens": 2}}, 200),
    ("/generate", {"inputs": "hi", "parameters": {"top_p": 1.0}}, 422),
    ("/generate", TOO_LONG, 422),
    ("/generate_stream", GENERATE, 200),
    ("/generate_stream", STREAM_DETAILED, 200),
    ("/generate_stream", TOO_LONG, 422),
    ("/", GENERATE, 200),
    ("/", {**GENERATE, "stream": True}, 200),
    ("/", {"inputs": "hi", "parameters": {"temperature": 0}}, 422),
    ("/tokenize", {"inputs": PROMPT}, 200),
    ("/v1/completions", {"prompt": PROMPT, "max_tokens": 4}, 200),
    ("/v1/completions", {"prompt": [PROMPT], "max_tokens": 4, "stream": True}, 200),
    ("/v1/completions", {"prompt": PROMPT, "stream": True, "stream_options": {"include_usage": True}}, 200),
    ("/v1/completions", {"prompt": "Edit " * 300}, 422),
    ("/v1/chat/completions", {**CHAT, "max_tokens": 4}, 200),
    ("/v1/chat/completions", {**CHAT, "max_tokens": 4, "stream": True}, 200),
    ("/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}}, 200),
    ("/v1/chat/completions", {"messages": "not a list"}, 422),
]


@pytest.mark.parametrize(("route", "body", "status"), CASES)
def test_post_routes_answer_as_the_openapi_document_says(
    url: str, contract: OpenAPIContract, route: str, body: dict[str, Any], status: int
) -> None:
    response = httpx.post(f"{url}{route}", json={"max_tokens": 6, **body} if "/v1/" in route else body)
    assert response.status_code == status, response.text
    contract.check(route, "post", response)


@pytest.mark.parametrize("route", ["/info", "/v1/models"])
def test_get_routes_answer_as_the_openapi_document_says(
    url: str, contract: OpenAPIContract, route: str
) -> None:
    response = httpx.get(f"{url}{route}")
    assert response.status_code == 200
    contract.check(route, "get", response)


def test_health_and_metrics(url: str) -> None:
    health, metrics = httpx.get(f"{url}/health"), httpx.get(f"{url}/metrics")
    assert (health.status_code, health.content) == (200, b"")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "\ntgi_request_count " in metrics.text  # TGI's name: no "_total"


def test_detailed_answer_has_prefill_top_tokens_and_seed(url: str) -> None:
    details = httpx.post(f"{url}/generate", json=DETAILED).json()["details"]
    assert details["seed"] == 3
    assert details["prefill"][0]["logprob"] is None  # the BOS token has no prediction
    assert all(p["logprob"] is not None for p in details["prefill"][1:])
    assert [len(top) for top in details["top_tokens"]] == [2] * details["generated_tokens"]


def test_stream_in_error_is_an_error_response(tiny_llama_dir: Path, contract: OpenAPIContract) -> None:
    with serve_tiny(tiny_llama_dir, wrap_forward=failing_after(2)) as (url, _):
        streamed = httpx.post(
            f"{url}/generate_stream", json={**GENERATE, "parameters": {"max_new_tokens": 9}}
        )
        failed = httpx.post(f"{url}/generate", json=GENERATE)
    events = contract.check("/generate_stream", "post", streamed)
    assert events[-1]["error_type"] == "generation"
    assert failed.status_code == 424
    contract.check("/generate", "post", failed)


# -- huggingface_hub clients -------------------------------------------------------------------------------


def test_inference_client_text_generation(url: str) -> None:
    client = InferenceClient(model=url)
    reference = httpx.post(f"{url}/generate", json={"inputs": PROMPT, "parameters": DETAILS}).json()
    plain = client.text_generation(PROMPT, max_new_tokens=5)
    detailed = client.text_generation(PROMPT, max_new_tokens=5, details=True)
    streamed = list(client.text_generation(PROMPT, max_new_tokens=5, stream=True))
    streamed_details = list(client.text_generation(PROMPT, max_new_tokens=5, stream=True, details=True))
    prompt_tokens = httpx.post(f"{url}/tokenize", json={"inputs": PROMPT}).json()
    assert plain == detailed.generated_text == reference["generated_text"]
    assert detailed.details is not None and detailed.details.finish_reason == "length"
    assert [t.id for t in detailed.details.tokens] == [t["id"] for t in reference["details"]["tokens"]]
    assert "".join(streamed) == plain
    assert "".join(e.token.text for e in streamed_details) == plain
    last = streamed_details[-1]
    assert last.generated_text == plain
    assert last.details is not None
    assert (last.details.generated_tokens, last.details.input_length) == (5, len(prompt_tokens))


def test_inference_client_raises_tgis_errors(url: str) -> None:
    client = InferenceClient(model=f"{url}/generate")
    with pytest.raises(HubValidationError, match="top_p"):
        client.text_generation(PROMPT, top_p=1.0, do_sample=True)
    with pytest.raises(HubValidationError, match="must have less than 192 tokens"):
        list(InferenceClient(model=f"{url}/generate_stream").text_generation("Edit " * 300, stream=True))


async def test_async_inference_client(url: str) -> None:
    client = AsyncInferenceClient(model=url)
    try:
        answer = await client.text_generation(PROMPT, max_new_tokens=4, details=True)
        pieces = [p async for p in await client.text_generation(PROMPT, max_new_tokens=4, stream=True)]
    finally:
        await client.close()
    assert "".join(pieces) == answer.generated_text
    assert answer.details is not None and answer.details.generated_tokens == 4


# -- openai client ------------------------------------------------------------------------------------------


def test_openai_completions_and_chat(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    reference = httpx.post(f"{url}/generate", json=GENERATE).json()["generated_text"]
    assert [m.id for m in client.models.list().data] == ["tiny-llama"]
    completion = client.completions.create(model="tiny-llama", prompt=PROMPT, max_tokens=5, temperature=0)
    assert completion.choices[0].text == reference
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    chunks = list(
        client.completions.create(
            model="tiny-llama",
            prompt=PROMPT,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == reference
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    messages: Any = CHAT["messages"]
    chat = client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=5)
    streamed = client.chat.completions.create(
        model="tiny-llama", messages=messages, max_tokens=5, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in streamed if c.choices]
    assert chat.choices[0].message.content == "".join(pieces)
    assert chat.choices[0].finish_reason == "length"


def test_openai_stop_sequences_are_cut(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    full = client.completions.create(model="m", prompt=PROMPT, max_tokens=8).choices[0].text
    stop = full[3:5]
    cut = client.completions.create(model="m", prompt=PROMPT, max_tokens=8, stop=[stop])
    streamed = client.completions.create(model="m", prompt=PROMPT, max_tokens=8, stop=[stop], stream=True)
    assert cut.choices[0].text == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].text for c in streamed if c.choices) == cut.choices[0].text


def test_openai_client_raises_on_validation_errors(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.completions.create(model="m", prompt="Edit " * 300)
    assert raised.value.status_code == 422
    assert "`inputs` must have less than 192 tokens" in str(raised.value.body)


async def test_async_openai_chat_stream(url: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused")
    messages: Any = CHAT["messages"]
    stream = await client.chat.completions.create(model="m", messages=messages, max_tokens=4, stream=True)
    chunks = [c async for c in stream]
    await client.close()
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].delta.role == "assistant" for c in chunks)


# -- the project's own backends ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["tgi", "openai"])
async def test_aligner_runnable_corrects_like_the_in_process_model(
    url: str, printable_llama_dir: Path, backend: str
) -> None:
    generation = GenerationParams(max_new_tokens=6)
    question = {"question": "How do I edit?", "answer": "Use the pair."}
    served = AlignerRunnable(backend=backend, url=url, generation=generation, on_error="raise")  # type: ignore[arg-type]
    # The same model in this process, in the server's dtype (float32; in-process defaults to bf16 if native).
    in_process = TransformersBackend(printable_llama_dir, dtype="float32")
    local = AlignerRunnable(backend=in_process, generation=generation)
    expected = local.invoke(question).content
    assert expected and expected != question["answer"]
    assert served.invoke(question).content == expected
    assert (await served.ainvoke(question)).content == expected
    assert "".join(str(c.content) for c in served.stream(question)) == expected
