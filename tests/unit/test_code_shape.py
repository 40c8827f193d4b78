"""The shape the code keeps (issue #29): the web process's app factory stays short (one
router per resource), no function in ``services/`` or ``web/`` grows past 80 lines, no
service module imports another that imports it back, directly or not, and no entry point
(``cli``, ``web``, ``workers``, ``scheduler``) opens a transaction except through a
service."""

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


ENTRY_POINTS = ("cli", "web", "workers", "scheduler")
# What an entry point may use of persistence: setting its process up (the database it
# points at, the schema's migrations), and the row types a service hands back. Reads and
# writes go through services (``services/operator/`` for operators' own).
SETUP = {"db", "migrate", "tables"}
DB_SETUP = {"configure", "is_configured", "sqlite_file", "engine", "create_schema",
            "drop_private_schema", "current_schema"}
ENGINE_SETUP = {"url", "dispose"}
OPENS = {"unit_of_work", "Session", "sessionmaker", "begin", "connect", "begin_nested"}


def transaction_openings(path: Path) -> list[str]:
    """Where a module opens a transaction itself, or reaches persistence beyond setup."""
    found: list[str] = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if node.module == "persistence" and names - SETUP:
                found.append(f"{where} imports persistence.{sorted(names - SETUP)}")
            elif node.module.startswith("persistence.") and node.module not in {
                    f"persistence.{m}" for m in SETUP}:
                found.append(f"{where} imports {node.module}")
            elif node.module == "persistence.db" and names - DB_SETUP:
                found.append(f"{where} imports {sorted(names - DB_SETUP)} of persistence.db")
            elif node.module.split(".")[0] in ("sqlalchemy", "sqlmodel") and names & OPENS:
                found.append(f"{where} imports {sorted(names & OPENS)} of {node.module}")
        elif isinstance(node, ast.Import):
            found += [f"{where} imports {a.name}" for a in node.names
                      if a.name.startswith("persistence.")
                      and a.name.removeprefix("persistence.") not in SETUP]
        elif isinstance(node, ast.Attribute):
            base = node.value
            if isinstance(base, ast.Name) and base.id == "db" and node.attr not in DB_SETUP:
                found.append(f"{where} db.{node.attr}")
            elif (isinstance(base, ast.Call) and isinstance(base.func, ast.Attribute)
                  and base.func.attr == "engine" and node.attr not in ENGINE_SETUP):
                found.append(f"{where} engine().{node.attr}")
            elif node.attr in OPENS - {"connect"} and not (
                    isinstance(base, ast.Name) and base.id in ("typer", "app")):
                found.append(f"{where} .{node.attr}")
    return found


def test_no_entry_point_opens_a_transaction() -> None:
    found = [f for folder in ENTRY_POINTS for path in sorted((ROOT / folder).rglob("*.py"))
             for f in transaction_openings(path)]
    assert not found, found


def sql_imports(path: Path) -> list[str]:
    """What a module imports of SQLAlchemy or SQLModel beyond a ``Session`` to pass on, the
    exceptions to catch and the parsing of a database URL: the means to write a
    statement."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module \
                and node.module.split(".")[0] in ("sqlalchemy", "sqlmodel") \
                and node.module != "sqlalchemy.exc":
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}"
                      for a in node.names if a.name not in ("Session", "exc", "make_url")]
        elif isinstance(node, ast.Import):
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {a.name}" for a in node.names
                      if a.name.split(".")[0] in ("sqlalchemy", "sqlmodel")]
    return found


def test_no_sql_outside_persistence() -> None:
    found = [f for folder in ("services", *ENTRY_POINTS)
             for path in sorted((ROOT / folder).rglob("*.py")) for f in sql_imports(path)]
    assert not found, found
