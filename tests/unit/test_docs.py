"""The README and the docs name nothing outside the repository (issue #27: they pointed to
"SPEC §2", "SPEC §10" and "REPLAY.md", which are not in it): every link resolves — a file
that exists, a heading that exists — every "FILE §N" names a numbered section of FILE,
every 'FILE, "Section"' a heading of FILE, and every path in backticks a file or folder of
the repository. And the README's exit-status table is the one the CLI uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "clients" / "python" / "README.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return [m.group(1).strip() for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.M)]


def numbered(path: Path) -> set[str]:
    """The section numbers of a file's headings: "## 2. Periods" and "### 2.3 DST"."""
    found = set()
    for h in headings(path):
        m = re.match(r"(\d+(?:\.\d+)*)\.?\s", h)
        if m:
            found.add(m.group(1))
    return found


def resolve(source: Path, target: str) -> Path | None:
    for base in (source.parent, ROOT, ROOT / "docs"):
        if (base / target).exists():
            return (base / target).resolve()
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_to_files_and_headings(doc: Path) -> None:
    problems = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # https://, mailto: — outside by design, and named as such
        path, _, anchor = target.partition("#")
        found = doc if not path else resolve(doc, path)
        if found is None:
            problems.append(f"{target}: no such file")
        elif anchor and found.suffix == ".md" and anchor not in {
                slug(h) for h in headings(found)}:
            problems.append(f"{target}: no heading #{anchor} in {found.name}")
    assert not problems, f"{doc.name}: {problems}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_sections_exist(doc: Path) -> None:
    """"billing-rules.md §2.3", "§14–§16" (a bare § is billing-rules.md's), and
    'docs/decisions.md, "Speed"'."""
    text = doc.read_text(encoding="utf-8")
    rules = numbered(ROOT / "docs" / "billing-rules.md")
    problems = []
    for m in re.finditer(r"(?:([\w./-]+\.md)\]?(?:\([^)]*\))?\s*)?§(\d+(?:\.\d+)*)"
                         r"(?:\s*[–-]\s*§(\d+))?", text):
        file = m.group(1)
        target = resolve(doc, file) if file else ROOT / "docs" / "billing-rules.md"
        if target is None:
            problems.append(f"{m.group(0)}: no such file")
            continue
        sections = rules if target.name == "billing-rules.md" else numbered(target)
        for number in filter(None, (m.group(2), m.group(3))):
            if number not in sections:
                problems.append(f"{m.group(0)}: no section {number} in {target.name}")
    for m in re.finditer(r"([\w./-]+\.md)\)?,?\s+\"([^\"]+)\"", text):
        target = resolve(doc, m.group(1))
        if target is None or m.group(2) not in headings(target):
            problems.append(f"{m.group(0)}: no heading {m.group(2)!r}")
    assert not problems, f"{doc.name}: {problems}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_name_outside_the_repository(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert "SPEC" not in text and "REPLAY.md" not in text, doc.name
    problems = []
    for name in set(re.findall(r"(?<![\w/.-])([\w-]+(?:/[\w.-]+)*\.md)\b", text)):
        if resolve(doc, name) is None:
            problems.append(name)
    for path in set(re.findall(r"`((?:[\w.-]+/)+[\w.-]*\.(?:py|md|yaml|json|toml))`", text)):
        if resolve(doc, path) is None:
            problems.append(path)
    assert not problems, f"{doc.name} names what is not in the repository: {problems}"


def test_the_readme_exit_status_table_is_the_clis() -> None:
    from cli.common import BAD_INPUT, OK, REFUSED, UNREACHABLE

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("#### Exit status"):]
    section = section[:section.index("\n#", 1)]
    rows = dict(re.findall(r"^\| `(\d)` \| ([^|]+) \|", section, re.M))
    assert set(rows) == {str(OK), str(REFUSED), str(BAD_INPUT), str(UNREACHABLE)}
    assert "done" in rows[str(OK)] and "refused" in rows[str(REFUSED)]
    assert "bad" in rows[str(BAD_INPUT)] and "does not answer" in rows[str(UNREACHABLE)]


def test_every_setting_is_in_the_readme() -> None:
    """Every environment variable the processes read is in the README (#27: `HOST` was
    documented nowhere)."""
    from services.settings import Settings

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = {f"BILLING_{name.upper()}" for name in Settings.model_fields}
    for folder in ("web", "scheduler", "workers", "services", "cli"):
        for source in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"os\.environ\.get\(\"([A-Z_]+)\"",
                                    source.read_text(encoding="utf-8")))

    def named(name: str) -> bool:  # `BILLING_SMTP_HOST` / `_PORT` names BILLING_SMTP_PORT
        head, _, tail = name.rpartition("_")
        return f"`{name}`" in readme or re.search(
            rf"`{head}_[A-Z_]*` */ *[^|]*`_?{tail}`", readme) is not None

    missing = sorted(n for n in names if not named(n))
    assert not missing, f"settings the README does not name: {missing}"


def test_the_replay_format_documents_each_meter_field() -> None:
    """#27: docs/scenarios.md's meter table omitted `unit`."""
    text = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    table = text[text.index("**`meters[]`**"):text.index("**`plans[]`**")]
    for field in ("id", "aggregation", "property", "unit"):
        assert f"| `{field}` |" in table, field
