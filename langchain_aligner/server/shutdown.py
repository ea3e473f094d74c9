"""Graceful shutdown of ``langchain-aligner serve``: the first SIGTERM or SIGINT drains the engine, then
uvicorn exits."""

from __future__ import annotations

import asyncio
import logging
import socket
from types import FrameType

import uvicorn

from langchain_aligner.server.engine import BatchingEngine

__all__ = ["DEFAULT_GRACEFUL_TIMEOUT", "DrainingServer"]

DEFAULT_GRACEFUL_TIMEOUT = 30.0
"""Seconds the requests in flight get to finish after a shutdown signal (``--graceful-timeout``)."""

LAST_WRITES_TIMEOUT = 5
"""Seconds the answers get, once the engine has stopped, to write their last event before uvicorn closes."""

logger = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains its engine before it exits.

    On the first SIGTERM or SIGINT, ``/health`` and new generation requests answer 503 (in TGI's error
    shape); the requests in flight run to their end for up to ``graceful_timeout`` seconds; those still
    running then end with an error (a stream with an in-stream error event, as any failure); then the server
    exits as uvicorn does, re-raising the signal. A second signal exits at once (uvicorn's own handling).

    Args:
        config: uvicorn's configuration; its ``timeout_graceful_shutdown`` bounds the final close.
        engine: The engine behind the served app.
        graceful_timeout: Seconds the requests in flight get to finish.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        engine: BatchingEngine,
        graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
    ) -> None:
        super().__init__(config)
        self.engine, self.graceful_timeout = engine, graceful_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None or self._draining or self.should_exit:  # not serving yet, or a second signal
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._captured_signals.append(sig)  # re-raised once the server is down, as uvicorn does
        self._loop.call_soon_threadsafe(self._start_draining)

    def _start_draining(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        logger.info("draining: no new requests; in-flight ones get up to %g s", self.graceful_timeout)
        await self.engine.drain(self.graceful_timeout)
        # Every answer has its end (a result or an error) now: let them write it before uvicorn closes.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LAST_WRITES_TIMEOUT
        while self.server_state.tasks and loop.time() < deadline:
            await asyncio.sleep(0.01)
        self.should_exit = True
