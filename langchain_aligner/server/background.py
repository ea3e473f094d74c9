"""Run an ASGI app with uvicorn in a background thread: for tests, the quickstart and benchmarks."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

__all__ = ["run_server_in_thread"]


@contextmanager
def run_server_in_thread(app: object, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` in a daemon thread and yield its base URL once it accepts connections.

    ``port=0`` picks a free port. The app's lifespan runs (so the engine starts and stops with the server);
    leaving the block shuts the server down and waits for the thread. A server that fails to start raises
    ``RuntimeError`` instead of hanging.
    """
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP; without it
    # small responses wait for delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    # Outside the main thread uvicorn installs no signal handlers: leaving the block is what stops it.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server stopped during start-up (see the log for the cause)")
            thread.join(timeout=0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
