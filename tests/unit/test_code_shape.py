"""The shape the code keeps (issue #29): the web process's app factory stays short (one
router per resource), no function in ``services/`` or ``web/`` grows past 80 lines, and
no service module imports another that imports it back, directly or not."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_FUNCTION_LINES = 80


def functions(folder: str) -> list[tuple[str, str, int]]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                found.append((str(path.relative_to(ROOT)), node.name,
                              node.end_lineno - node.lineno + 1))
    return found


def test_no_long_function_in_services_or_web() -> None:
    long = [f for folder in ("services", "web") for f in functions(folder)
            if f[2] > MAX_FUNCTION_LINES]
    assert not long, long


def test_the_app_factory_is_short() -> None:
    (length,) = [n for path, name, n in functions("web") if path == "web/app.py"
                 and name == "create_app"]
    assert length < 40


def imports_of(path: Path) -> set[str]:
    """The ``services.*`` modules a module imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "services":
                found |= {f"services.{a.name}" for a in node.names}
            elif node.module.startswith("services."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("services.")}
    return found


def test_no_circle_between_service_modules() -> None:
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in (ROOT / "services").rglob("*.py")}
    graph = {m: {i for i in imports_of(p) if i in modules and i != m}
             for m, p in modules.items()}
    circles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                circles.append([*path[path.index(other):], other])
            elif other not in state:
                visit(other, [*path, other])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, [" → ".join(c) for c in circles]
