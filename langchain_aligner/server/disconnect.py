"""Drop the work of clients that leave: ASGI middleware that cancels a request whose client disconnected.

TGI drops a request as soon as its response channel is closed. A streamed answer notices a closed connection
when it writes the next event; a non-streamed one (``/generate``, the OpenAI routes without ``stream``)
writes nothing until the end, so without this its row would decode until ``max_new_tokens`` for nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["CancelOnDisconnect"]

_Message = MutableMapping[str, Any]


class CancelOnDisconnect:
    """ASGI middleware: once a request's body is read, watch its connection; if the client disconnects before
    the response is complete, cancel the request's handling (which closes its engine stream and frees its
    row in the batch).

    The app still receives the ``http.disconnect`` message when it asks for one (sse-starlette does).
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: _Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_read, disconnected = asyncio.Event(), asyncio.Event()
        answered = dropped = False

        async def app_receive() -> _Message:
            if body_read.is_set():  # after the body, the only message left is the disconnect
                await disconnected.wait()
                return {"type": "http.disconnect"}
            message: _Message = await receive()
            if message["type"] == "http.disconnect":
                disconnected.set()
            elif not message.get("more_body", False):
                body_read.set()
            return message

        async def app_send(message: _Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        async def watch() -> None:
            nonlocal dropped
            await body_read.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()
            if not answered:  # the server also reports a disconnect once the response is complete
                dropped = True
                handling.cancel()

        handling = asyncio.ensure_future(self.app(scope, app_receive, app_send))
        watching = asyncio.ensure_future(watch())
        try:
            await handling  # cancelling this task (server shutdown) cancels the handling too
        except asyncio.CancelledError:
            if not dropped:
                raise
        finally:
            watching.cancel()
