"""Shared fixtures. Keep one fixture per concept, with a docstring; add new ones below the existing ones."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_servers import FakeServer, start_fake_server


@pytest.fixture(scope="session")
def _tgi_server() -> Iterator[FakeServer]:
    server = start_fake_server("tgi")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _openai_server() -> Iterator[FakeServer]:
    server = start_fake_server("openai")
    yield server
    server.stop()


@pytest.fixture
def tgi_server(_tgi_server: FakeServer) -> FakeServer:
    """A fake TGI server on 127.0.0.1 (see tests/fake_servers.py), its script reset for this test."""
    _tgi_server.reset()
    return _tgi_server


@pytest.fixture
def openai_server(_openai_server: FakeServer) -> FakeServer:
    """A fake OpenAI-compatible ``/v1/completions`` server on 127.0.0.1, its script reset for this test."""
    _openai_server.reset()
    return _openai_server
