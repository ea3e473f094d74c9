"""langchain-tests' standard integration suite for ChatAligner.

The inner model is a ``ChatOpenAI`` talking to a scripted OpenAI-compatible chat server on 127.0.0.1, the
Aligner is a tiny Llama served by the project's own TGI-compatible server (``langchain-aligner serve``); every
answer goes through both over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_aligner import AlignerRunnable, GenerationParams
from langchain_aligner.backends import TransformersBackend
from langchain_aligner.chat_model import ChatAligner
from langchain_aligner.server.engine import BatchingEngine
from langchain_aligner.testing.fake_servers import FakeServer, Script, fake_tokens
from tests.helpers.agents import CHAT_ALIGNER_STANDARD_PARAMS
from tests.helpers.serving import serve_tiny

ALIGNER_MAX_NEW_TOKENS = 100


def _reply(body: dict[str, Any]) -> list[str]:
    """The scripted chat model's tokens: a sentence about the last user message, cut at stop/max tokens."""
    last = next(m for m in reversed(body["messages"]) if m["role"] == "user")
    content = last["content"]
    text = content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)
    tokens = fake_tokens(f"You wrote {len(fake_tokens(text))} words, thank you for asking.")
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or len(tokens)
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    kept: list[str] = []
    for token in tokens[:limit]:
        if any(s in "".join(kept) + token for s in stops):
            break
        kept.append(token)
    return kept


def _chat_app(script: Script) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        script.requests.append(body)
        tokens = _reply(body)
        prompt_tokens = sum(len(fake_tokens(json.dumps(m))) for m in body["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(tokens)}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return {**base, "object": "chat.completion", "choices": [choice], "usage": usage}

        async def events() -> AsyncIterator[str]:
            base_chunk = {**base, "object": "chat.completion.chunk"}
            for i, token in enumerate(tokens):
                delta = {"role": "assistant", "content": token} if i == 0 else {"content": token}
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                yield f"data: {json.dumps({**base_chunk, 'choices': [choice]})}\n\n"
                await asyncio.sleep(0)
            choice = {"index": 0, "delta": {}, "finish_reason": "stop"}
            yield f"data: {json.dumps({**base_chunk, 'choices': [choice]})}\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                yield f"data: {json.dumps({**base_chunk, 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def chat_server() -> Iterator[FakeServer]:
    """A scripted OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1: the inner model."""
    server = FakeServer(_chat_app(Script()), Script()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def aligner_server(printable_llama_dir: Path) -> Iterator[tuple[str, BatchingEngine]]:
    """``langchain-aligner serve``'s app on 127.0.0.1 with the tiny Llama as the Aligner."""
    with serve_tiny(printable_llama_dir, max_input_tokens=150, max_total_tokens=256) as served:
        yield served


class TestChatAlignerIntegration(ChatModelIntegrationTests):
    """What a chat model must do, with both the inner model and the Aligner behind real HTTP servers.

    Tool calling, structured output and JSON mode are switched off here: the scripted inner server does
    not choose tools or write JSON, and with ChatAligner they are the inner model's own features (tool
    calls and structured output pass through uncorrected; test_chat_model.py checks that).
    """

    urls: dict[str, str] = {}

    @pytest.fixture(autouse=True)
    def _servers(
        self, chat_server: FakeServer, aligner_server: tuple[str, BatchingEngine], printable_llama_dir: Path
    ) -> None:
        self.urls.update(chat=chat_server.url, aligner=aligner_server[0], model_dir=str(printable_llama_dir))

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatAligner

    @property
    def chat_model_params(self) -> dict[str, Any]:
        inner = ChatOpenAI(
            model="inner-model",
            base_url=f"{self.urls['chat']}/v1",
            api_key="unused",  # type: ignore[arg-type]
            stream_usage=True,
            max_retries=0,
            # Its own async client: ChatOpenAI's shared default one outlives pytest-asyncio's per-test loops.
            http_async_client=openai.DefaultAsyncHttpxClient(),
        )
        # max_new_tokens leaves room for a prompt in the server's 256 total tokens (as TGI requires).
        aligner = {
            "backend": "tgi",
            "url": self.urls["aligner"],
            "max_retries": 0,
            "generation": {"max_new_tokens": ALIGNER_MAX_NEW_TOKENS},
        }
        return {"llm": inner, "aligner": aligner}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        return CHAT_ALIGNER_STANDARD_PARAMS

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def model_override_value(self) -> str:
        return "other-inner-model"

    @property
    def returns_usage_metadata(self) -> bool:
        # Not applicable: the inner model's run and the Aligner's, children of ChatAligner's, report their
        # usage under their own model names; ChatAligner's message repeating it would count it twice
        # (test_usage.py). The Aligner's usage is in response_metadata["aligner_usage"].
        return False

    def test_answers_are_corrections(self, model: BaseChatModel) -> None:
        """Not a standard test: the answer really is the served Aligner's, and the inner model's is kept."""
        result = model.invoke("Hello")
        original = result.response_metadata["aligner_original_answer"]
        assert original == "You wrote 1 words, thank you for asking."
        # The same model in this process: the reference for what the server must have answered.
        params = GenerationParams(max_new_tokens=ALIGNER_MAX_NEW_TOKENS)
        in_process = TransformersBackend(self.urls["model_dir"], dtype="float32")  # the server's dtype
        reference = AlignerRunnable(backend=in_process, generation=params)
        expected = reference.invoke({"question": "Hello", "answer": original})
        assert result.response_metadata["aligner_corrected"] is True
        assert expected.content and result.content == expected.content
        assert result.response_metadata["model_name"] == "inner-model"
        assert result.response_metadata["aligner_model"] == "tiny-llama"
        # The served Aligner's /generate reports the prompt's tokens too (decoder_input_details).
        usage = result.response_metadata["aligner_usage"]
        assert usage == expected.usage_metadata and usage["input_tokens"] > 0
