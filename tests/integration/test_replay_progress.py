"""A long replay shows its progress without a terminal too (issue #27, item 8): a line on
standard error every few seconds (here: every step), the JSON still whole on stdout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli.main
from persistence import db
from services import clock

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restored() -> Iterator[None]:
    yield
    clock.reset()
    if db.is_configured():
        db.engine().dispose()


def test_a_replay_without_a_terminal_says_how_far_it_is(
        restored: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cli.main, "PROGRESS_EVERY_S", 0.0)
    out = tmp_path / "invoices.json"
    done = CliRunner().invoke(cli.main.app, ["replay", str(ROOT / "examples" /
                                                           "quickstart.yaml"),
                                             "--out", str(out)])
    assert done.exit_code == 0, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("replay quickstart.yaml")]
    assert lines and lines[0].startswith("replay quickstart.yaml: step 1 of "), done.stderr
    assert json.loads(out.read_text())["invoices"]
