"""examples/bootstrap/run.py: bad arguments stop it before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.examples import load_script
from tests.helpers.paths import EXAMPLES

SCRIPT = EXAMPLES / "bootstrap" / "run.py"


def test_bad_arguments_stop_before_any_work(tmp_path: Path) -> None:
    example = load_script(SCRIPT)
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--work-dir", str(tmp_path), "--questions", "0"])
    assert exit_info.value.code == 2
    assert not any(tmp_path.iterdir())
