"""``langchain-aligner train``: subcommand dispatch; its module form ``python -m langchain_aligner_train``,
which the DeepSpeed launcher runs with ``--local_rank=N`` first; usage and help."""

from __future__ import annotations

import sys
import types

import pytest

from langchain_aligner import cli as project_cli
from langchain_aligner_train import cli
from langchain_aligner_train.cli import COMMANDS


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv each dispatched subcommand's ``main`` was called with (the subcommand modules stubbed)."""
    calls: list[list[str]] = []
    for name in COMMANDS:
        stub = types.SimpleNamespace(main=lambda argv: calls.append(list(argv)) or 0)
        monkeypatch.setitem(sys.modules, f"{cli.__package__}.{name}", stub)
    return calls


def test_subcommand_gets_the_rest_of_the_arguments(received: list[list[str]]) -> None:
    assert cli.main(["sft", "--config", "c.yaml", "lr=1e-5"]) == 0
    assert received == [["--config", "c.yaml", "lr=1e-5"]]


def test_launcher_local_rank_before_the_subcommand_is_handed_on(received: list[list[str]]) -> None:
    # `deepspeed --module langchain_aligner_train dpo ...` runs `python -m ... --local_rank=1 dpo ...`
    assert cli.main(["--local_rank=1", "dpo", "--config", "c.yaml"]) == 0
    assert received == [["--config", "c.yaml", "--local_rank=1"]]


def test_the_project_cli_runs_the_same_command(received: list[list[str]]) -> None:
    assert project_cli.main(["train", "dpo", "--config", "c.yaml", "beta=0.2"]) == 0
    assert project_cli.main(["train", "sft", "--help"]) == 0  # the subcommand's own help
    assert received == [["--config", "c.yaml", "beta=0.2"], ["--help"]]


@pytest.mark.parametrize("argv", [[], ["--local_rank=0"], ["pretrain"], ["--config", "c.yaml"]])
def test_unknown_or_missing_subcommand_is_refused_with_the_usage(
    argv: list[str], received: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert "usage: langchain-aligner train [-h] {sft,dpo} ..." in capsys.readouterr().err
    assert received == []


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_subcommands_and_succeeds(
    flag: str, received: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([flag])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: langchain-aligner train [-h] {sft,dpo} ...")
    assert all(f"\n  {name:<5} {text}" in out for name, text in COMMANDS.items())
    assert received == []
