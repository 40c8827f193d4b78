"""``python -m benchmarks.bench --baseline REF``: the same measures for REF and for the
working tree, interleaved, each figure's ratio printed.

REF is checked out beside the working tree (a detached git worktree) with a virtualenv of
its own, both cached under ``--cache`` (default ``$BENCH_CACHE``, else ``bench-cache``
next to the repository) and reused by the next run. Each side runs its own
``benchmarks/bench.py`` in a process of its own — REF's code measured by REF's benchmark,
the working tree's by its own — with the same ``--only`` and the options REF's benchmark
knows (the others are named, then left out). The runs alternate REF, tree, tree, REF, …
so that a machine growing busier or quieter weighs on both sides alike; compare ratios
within one run, not figures across runs.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
console = Console(stderr=True)
# a figure's numbers, not those of a label glued to them ("p99 437 ms" is 437)
NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
# a first column such as "1. ingest, …" or "4b'. control …" is known by its label
LABEL = re.compile(r"^(\d+[a-z]?'?\.)\s")


def say(text: str) -> None:
    console.print(f"[dim]{datetime.now():%H:%M:%S}[/] {text}", highlight=False)


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def cache_dir(given: str | None) -> Path:
    if given:
        return Path(given).resolve()
    if os.environ.get("BENCH_CACHE"):
        return Path(os.environ["BENCH_CACHE"]).resolve()
    return ROOT.parent / "bench-cache"


def prepare(ref: str, cache: Path) -> tuple[Path, Path]:
    """REF's tree and python, checked out and installed once (cached)."""
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    tree = cache / sha[:12]
    python = tree / ".venv" / "bin" / "python"
    ready = tree / ".venv" / ".bench-ready"
    if not tree.exists():
        say(f"baseline: checking {ref} ({sha[:12]}) out in {tree}")
        cache.mkdir(parents=True, exist_ok=True)
        git("worktree", "add", "--detach", str(tree), sha)
    if not ready.exists():
        say("baseline: its virtualenv (once)")
        subprocess.run([sys.executable, "-m", "venv", str(tree / ".venv")], check=True)
        packages = ["-e", str(tree), "httpx"]
        if (tree / "clients" / "python" / "pyproject.toml").exists():
            packages += ["-e", str(tree / "clients" / "python")]
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
        ready.write_text(sha + "\n")
    return tree, python


def options(python: Path, tree: Path) -> str:
    """The benchmark's own --help at a tree: the options it knows."""
    done = subprocess.run([str(python), "-m", "benchmarks.bench", "--help"], cwd=tree,
                          env=clean_env(tree), capture_output=True, text=True, check=True)
    return done.stdout


def clean_env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BILLING_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PYTHONPATH"] = str(tree)
    env["COLUMNS"] = "1000"  # one table row a line
    return env


def passed_on(argv: Sequence[str], known: str) -> tuple[list[str], list[str]]:
    """The options of ``argv`` (without --baseline/--repeat/--cache) that a benchmark whose
    --help is ``known`` takes; and those it does not."""
    kept: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        j = i + 1
        while j < len(argv) and not argv[j].startswith("--"):
            j += 1
        group = list(argv[i:j])
        name = arg.split("=", 1)[0]
        if name in ("--baseline", "--repeat", "--cache"):
            pass
        elif re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", known):
            kept += group
        else:
            dropped += group
        i = j
    return kept, dropped


@dataclass
class Side:
    name: str
    tree: Path
    python: Path
    argv: list[str]
    figures: dict[str, list[str]] = field(default_factory=dict)  # measure -> result per run
    details: dict[str, list[str]] = field(default_factory=dict)  # and its detail
    order: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def run(self) -> None:
        cmd = [str(self.python), "-m", "benchmarks.bench", *self.argv]
        say(f"[bold]{self.name}[/]: {' '.join(cmd[1:])}  (load {load()})")
        began = time.perf_counter()
        done = subprocess.run(cmd, cwd=self.tree, env=clean_env(self.tree), text=True,
                              stdout=subprocess.PIPE)
        self.seconds.append(time.perf_counter() - began)
        if done.returncode:
            raise SystemExit(f"{self.name}: the benchmark failed (exit {done.returncode})")
        for measure, result, detail in table_rows(done.stdout):
            if measure not in self.figures:
                self.order.append(measure)
            self.figures.setdefault(measure, []).append(result)
            self.details.setdefault(measure, []).append(detail)

    def shown(self, measure: str) -> str:
        """Each run's figure; for memory, where it was sampled too (flat or not)."""
        runs = self.figures[measure]
        if "memory" in measure:
            runs = [f"{r} ({d})" for r, d in zip(runs, self.details[measure], strict=True)]
        return "; ".join(runs)


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def table_rows(text: str) -> list[tuple[str, str, str]]:
    """(measure, result, detail) of each row of the benchmark's printed table, the measure named by
    its label ("1.", "4b'.") or, for the rows under one, by its text."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) < 2 or not cells[0] or cells[0] == "measure":
            continue
        label = LABEL.match(cells[0])
        rows.append((label.group(1) + " " + cells[0][label.end():] if label else cells[0],
                     cells[1], cells[2] if len(cells) > 2 else ""))
    return rows


def key(measure: str) -> str:
    label = LABEL.match(measure)
    return label.group(1) if label else measure


def numbers(result: str) -> list[float]:
    return [float(n.replace(",", "")) for n in NUMBER.findall(result)]


def higher_is_better(result: str) -> bool:
    return "/s" in result or "%" in result or "×" in result


def ratio(base: list[str], tree: list[str]) -> str:
    """tree ÷ REF of each number in the figure (the medians over the runs)."""
    b = [numbers(r) for r in base]
    t = [numbers(r) for r in tree]
    width = min(len(x) for x in b + t) if b and t else 0
    if not width:
        return "—"
    parts = []
    for i in range(width):
        mb = statistics.median(x[i] for x in b)
        mt = statistics.median(x[i] for x in t)
        parts.append(f"{mt / mb:.2f}×" if mb else "—")
    better = "higher is better" if higher_is_better(base[0]) else "lower is better"
    return " / ".join(parts) + f"  ({better})"


def compare(ref: str, argv: Sequence[str], repeat: int, cache: str | None) -> None:
    tree_ref, python_ref = prepare(ref, cache_dir(cache))
    known = options(python_ref, tree_ref)
    kept, dropped = passed_on(argv, known)
    if dropped:
        say(f"baseline: {ref}'s benchmark does not know {' '.join(dropped)}: left out there")
    mine, _ = passed_on(argv, options(Path(sys.executable), ROOT))
    base = Side(ref, tree_ref, python_ref, kept)
    tree = Side("working tree", ROOT, Path(sys.executable), mine)
    started = datetime.now(UTC)
    loads = [load()]
    for i in range(repeat):  # REF, tree, tree, REF, REF, tree, …
        for side in (base, tree) if i % 2 == 0 else (tree, base):
            side.run()
            loads.append(load())
    report(ref, base, tree, started, loads)


def report(ref: str, base: Side, tree: Side, started: datetime, loads: list[str]) -> None:
    table = Table(title=f"Baseline {ref} against the working tree, {started:%Y-%m-%d %H:%M} "
                        f"UTC, load (1/5/15 min) {loads[0]} at the start, {loads[-1]} at "
                        "the end", title_justify="left")
    table.add_column("measure")
    table.add_column(ref, justify="right")
    table.add_column("working tree", justify="right")
    table.add_column("tree ÷ " + ref, justify="right")
    ours = {key(m): m for m in tree.order}
    seen = set()
    for measure in base.order:
        mine = ours.get(key(measure))
        seen.add(key(measure))
        if mine is None:
            table.add_row(measure, base.shown(measure), "—", "—")
            continue
        table.add_row(mine, base.shown(measure), tree.shown(mine),
                      ratio(base.figures[measure], tree.figures[mine]))
    for measure in tree.order:
        if key(measure) not in seen:
            table.add_row(measure, "—", tree.shown(measure), "—")
    Console(width=max(200, Console().width)).print(table)
    print(f"load averages after each run: {' | '.join(loads)}")
