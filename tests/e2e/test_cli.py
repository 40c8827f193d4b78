"""The ``billing`` command as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import cli_process
from tests.conftest import ROOT

BILLING = [sys.executable, "-m", "cli"]


def billing(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return cli_process.run(args, cwd=cwd or Path.cwd(), timeout=300)


def test_replay_writes_json_to_stdout_and_logs_to_stderr() -> None:
    scenario = ROOT / "tests" / "e2e" / "scenarios" / "15-pricing-edges.yaml"
    done = billing("replay", str(scenario))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(
        scenario.with_name("15-pricing-edges.expected.json").read_text())


def test_replay_out_file(tmp_path: Path) -> None:
    out = tmp_path / "invoices.json"
    done = billing("replay", str(ROOT / "examples" / "quickstart.yaml"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == json.loads(
        (ROOT / "examples" / "quickstart.expected.json").read_text())


BROKEN = {
    "timezone": ("entities:\n  - {id: x, timezone: Mars/Olympus}\n",
                 "entities[0].timezone"),
    "meter": ("meters: []\nplans:\n  - {id: p, currency: EUR, interval: month, charges: "
              "[{id: c, type: usage, meter: nope, model: unit, unit_price: 1}]}\n",
              "plans[0].charges[0].meter"),
    "model": ("meters: [{id: m, aggregation: sum}]\nplans:\n  - {id: p, currency: EUR, "
              "interval: month, charges: [{id: c, type: usage, meter: m, model: magic}]}\n",
              "plans[0].charges[0].model"),
    "tiers": ("meters: [{id: m, aggregation: sum}]\nplans:\n  - {id: p, currency: EUR, "
              "interval: month, charges: [{id: c, type: usage, meter: m, model: graduated, "
              "tiers: [{up_to: 10, unit_price: 1}, {up_to: 5, unit_price: 1}, "
              "{up_to: null, unit_price: 1}]}]}\n",
              "plans[0].charges[0].tiers[1].up_to"),
    "null-not-last": ("meters: [{id: m, aggregation: sum}]\nplans:\n  - {id: p, currency: EUR, "
                      "interval: month, charges: [{id: c, type: usage, meter: m, model: bands, "
                      "bands: [{up_to: null, price: 1}, {up_to: 5, price: 1}]}]}\n",
                      "plans[0].charges[0].bands[0].up_to"),
    "missing": ("plans:\n  - {id: p, interval: month, charges: []}\n", "plans[0].currency"),
    "until": ("timeline: []\n", "until"),
    "at": ("timeline:\n  - {at: '2026-01-01T00:00:00', cancel: {subscription: s}}\n"
           "until: '2026-02-01T00:00:00Z'\n", "timeline[0].at"),
    "yaml": ("entities: [\n", "line"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_malformed_scenario_exits_non_zero_with_one_line(tmp_path: Path, name: str) -> None:
    text, where = BROKEN[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    done = billing("replay", str(path))
    assert done.returncode != 0
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr
    assert where in lines[0] and str(path) in lines[0]
    assert done.stdout == ""


def test_refused_action_is_logged_and_the_replay_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "refused.yaml"
    path.write_text(
        "entities: [{id: e, timezone: UTC}]\ncustomers: [{id: c, entity: e}]\n"
        "timeline:\n  - {at: '2026-01-01T00:00:00Z', cancel: {subscription: ghost}}\n"
        "until: '2026-01-03T00:00:00Z'\n"
    )
    done = billing("replay", str(path))
    assert done.returncode == 0, done.stderr
    assert "ghost" in done.stderr and "refused" in done.stderr
    assert json.loads(done.stdout)["invoices"] == []


def test_demo_prints_invoices_and_fills_its_outbox(tmp_path: Path) -> None:
    from html.parser import HTMLParser

    done = billing("demo", "--outbox", str(tmp_path / "outbox"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "EU-000001" in done.stdout and "US-000001" in done.stdout
    assert "total" in done.stdout
    sent = sorted(p.name for p in (tmp_path / "outbox" / "acme-eu").glob("*.json"))
    assert sent[0] == "EU-000001.json"
    document = json.loads((tmp_path / "outbox" / "acme-eu" / "EU-000001.json").read_text())

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.chunks: list[str] = []

        def handle_data(self, data: str) -> None:
            self.chunks.append(data.strip())

    page = Text()
    page.feed((tmp_path / "outbox" / "acme-eu" / "EU-000001.html").read_text())
    text = " ".join(c for c in page.chunks if c)
    assert "EU-000001" in text and "platform" in text
    assert f"€{document['total']}" in text  # the total, formatted with its currency
    assert not list((tmp_path / "outbox").rglob("*@*"))  # drafts are never delivered


def test_unknown_scenario_fields_are_ignored_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "extra.yaml"
    path.write_text(
        "description: a scenario with notes\n"
        "entities: [{id: e, timezone: UTC, name: Example Inc}]\n"
        "customers: [{id: c, entity: e}]\n"
        "timeline:\n  - {at: '2026-01-01T00:00:00Z', note: hi, cancel: {subscription: x}}\n"
        "until: '2026-01-02T00:00:00Z'\n"
    )
    done = billing("replay", str(path))
    assert done.returncode == 0, done.stderr
    for field in ("description", "entities[0].name", "timeline[0].note"):
        assert f"{field}: is not a known field (ignored)" in done.stderr


def test_the_demo_leaves_a_database_to_explore_and_explains_itself(tmp_path: Path) -> None:
    """After `billing demo`, the commands the README (and the demo) give next work on what
    it made; nothing else is left behind (issue #10)."""
    import os

    # the README's first command's last step, as a plain process
    done = subprocess.run([*BILLING, "demo"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["billing-demo.db", "outbox"]
    said = " ".join(done.stdout.split())
    assert "rejected: event f-bad (quantity: must be ≥ 0, got -2)" in said
    assert "conflict: f-2" in said
    assert "late: f-late" in said and "adjustment on EU-" in said
    assert "discount: sub-fjord has 10 % off its first 2 invoices" in said
    assert "drafts: sub-nordlys@2026-01-15" in said
    assert "export BILLING_DATABASE_URL=sqlite:///billing-demo.db" in said
    env = {**os.environ, "BILLING_DATABASE_URL": "sqlite:///billing-demo.db"}

    def explore(*args: str) -> str:
        result = cli_process.run(args, timeout=120, cwd=tmp_path, env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
        return result.stdout

    listing = explore("invoices", "list")
    assert "EU-000001" in listing and "sub-nordlys@2026-01-15" in listing
    assert "€44.10" in listing  # amounts with the currency's symbol and separators
    assert "EU-000004" in explore("invoices", "show", "EU-000004")
    assert "adjustment tokens" in explore("invoices", "show", "EU-000004")
    assert "nordlys" in explore("customers", "list")
    assert "sub-sunset" in explore("subscriptions", "list")
    assert "f-bad" in explore("usage", "rejected")
    assert "f-2" in explore("usage", "conflicts")
    assert "f-late" in explore("usage", "late")
    # on an 80-column terminal no reference or instant is broken across lines (#27)
    narrow = cli_process.run(["usage", "late"], timeout=120, cwd=tmp_path,
                             env={**env, "COLUMNS": "80"})
    assert narrow.returncode == 0, narrow.stderr
    assert re.search(r"EU-\d{6}", narrow.stdout), narrow.stdout
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", narrow.stdout), narrow.stdout
    explore("invoices", "release", "sub-nordlys@2026-01-15")
    assert json.loads(explore("invoices", "show", "sub-nordlys@2026-01-15", "--json"))[
        "status"] == "sent"
    assert not (tmp_path / "billing.db").exists()


def test_version() -> None:
    done = billing("--version")
    assert done.returncode == 0 and done.stdout.startswith("billing ")
