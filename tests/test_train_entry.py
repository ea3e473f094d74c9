"""``python -m train``: subcommand dispatch, also under the DeepSpeed launcher's argument order."""

from __future__ import annotations

import types

import pytest

import train.__main__ as entry


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv each dispatched subcommand's ``main`` was called with."""
    calls: list[list[str]] = []
    module = types.SimpleNamespace(main=lambda argv: calls.append(list(argv)) or 0)
    monkeypatch.setattr(entry.importlib, "import_module", lambda name: module)
    return calls


def test_subcommand_gets_the_rest_of_the_arguments(received: list[list[str]]) -> None:
    assert entry.main(["sft", "--config", "c.yaml", "lr=1e-5"]) == 0
    assert received == [["--config", "c.yaml", "lr=1e-5"]]


def test_launcher_local_rank_before_the_subcommand_is_handed_on(received: list[list[str]]) -> None:
    # `deepspeed --module train dpo ...` runs `python -m train --local_rank=1 dpo ...`
    assert entry.main(["--local_rank=1", "dpo", "--config", "c.yaml"]) == 0
    assert received == [["--config", "c.yaml", "--local_rank=1"]]


@pytest.mark.parametrize("argv", [[], ["--local_rank=0"], ["pretrain"]])
def test_unknown_or_missing_subcommand_prints_usage(
    argv: list[str], received: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert entry.main(argv) == 2
    assert "usage: python -m train {sft,dpo}" in capsys.readouterr().err
    assert received == []


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_subcommands_and_succeeds(
    flag: str, received: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert entry.main([flag]) == 0
    out = capsys.readouterr().out
    assert "usage: python -m train {sft,dpo}" in out
    assert all(f"\n  {name}" in out for name in entry.COMMANDS)
    assert received == []


def test_subcommand_help_is_the_subcommand_s(received: list[list[str]]) -> None:
    assert entry.main(["sft", "--help"]) == 0
    assert received == [["--help"]]
