"""The layers hold: ``parsers/`` and ``signing/`` import nothing from the engine, the engine's packages import
only downwards (docs/architecture.md), and no project module is part of an import cycle.

Read statically with ``ast`` so every import counts: module level, inside a
function, under ``if TYPE_CHECKING``. A function-level import hides a cycle from
the interpreter but not from a reader, so it counts here too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The packages that must stand without the engine (usable and testable on their own).
LOWER = ("parsers", "signing")
#: What they may never import.
FORBIDDEN = ("engine", "bench", "tests")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


#: The engine's rooms, lowest first: a module may import its own room and the rooms before it, never after.
#: "engine" is the small top level (errors, model, config, datadir, logs, metrics, files, ...).
ENGINE_ROOMS = (
    "engine", "engine.rules", "engine.pooling", "engine.ledger", "engine.intake", "engine.results",
    "engine.certificates", "engine.api", "engine.console", "engine.client", "engine.pipeline", "engine.cli",
)
#: Where imports inside functions are the design: every command module is imported to build the parser,
#: so each loads what its command needs only when it runs (``ketqua --help`` stays fast).
LAZY_BY_DESIGN = ("engine.cli.commands.",)


def _modules(packages: tuple[str, ...] = LOWER) -> dict[str, Path]:
    return {_module_name(path): path for package in packages for path in sorted((ROOT / package).rglob("*.py"))}


def _room(module: str) -> str:
    """The engine room a module lives in (``engine.__main__`` is the CLI's)."""
    if module == "engine.__main__":
        return "engine.cli"
    parts = module.split(".")
    if len(parts) > 1 and f"engine.{parts[1]}" in ENGINE_ROOMS:
        return f"engine.{parts[1]}"
    return "engine"


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``path`` imports (absolute names), with the line, wherever the statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, node.lineno
            # ``from signing import keys`` imports the submodule signing.keys.
            for alias in node.names:
                yield f"{module}.{alias.name}", node.lineno


def _graph(packages: tuple[str, ...] = LOWER) -> dict[str, set[str]]:
    modules = _modules(packages)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _ in _imports(name, path):
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_parsers_and_signing_import_nothing_from_the_engine() -> None:
    """No module under parsers/ or signing/ imports engine, bench or tests, not even inside a function."""
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: imports {target}"
        for name, path in _modules().items()
        for target, line in _imports(name, path)
        if target.split(".")[0] in FORBIDDEN
    ]
    assert not offenders, "parsers/ and signing/ must not depend on the engine:\n  " + "\n  ".join(offenders)


def test_no_import_cycle_among_parsers_and_signing() -> None:
    """The import graph of parsers/ and signing/ (function-level and TYPE_CHECKING imports included) has no cycle."""
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_in_the_project() -> None:
    """No cycle through any project module, the engine's included (package ``__init__`` re-exports count)."""
    cycle = _cycle(_graph(("parsers", "signing", "engine")))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_engine_rooms_import_only_downwards() -> None:
    """A module imports its own room or a lower one (ENGINE_ROOMS), and nothing from bench/ or tests/."""
    rank = {room: i for i, room in enumerate(ENGINE_ROOMS)}
    modules = _modules(("engine",))
    offenders = []
    for name, path in modules.items():
        for target, line in _imports(name, path):
            where = f"{path.relative_to(ROOT)}:{line}: {name} imports {target}"
            if target.split(".")[0] in ("bench", "tests"):
                offenders.append(where)
            elif target in modules and rank[_room(target)] > rank[_room(name)]:
                offenders.append(f"{where} ({_room(name)} is below {_room(target)})")
    assert not offenders, "imports that run upwards (see docs/architecture.md):\n  " + "\n  ".join(offenders)


def test_no_project_import_inside_a_function_without_a_reason() -> None:
    """Imports of project modules sit at module level, except in the CLI's command modules and where the
    line says why with a ``# lazy:`` comment (an optional heavy dependency loaded only when used)."""
    offenders = []
    for name, path in _modules(("parsers", "signing", "engine")).items():
        if name.startswith(LAZY_BY_DESIGN):
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for target, line in _function_imports(path):
            if target.split(".")[0] in ("engine", "parsers", "signing", "bench") and "# lazy:" not in lines[line - 1]:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: imports {target} inside a function")
    assert not offenders, "move these imports to the top of their module (or say why with '# lazy:'):\n  " + "\n  ".join(offenders)


def _function_imports(path: Path) -> Iterator[tuple[str, int]]:
    """(module, line) of every import statement inside a function body."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    yield from ((alias.name, node.lineno) for alias in node.names)
                elif isinstance(node, ast.ImportFrom):
                    yield ("." * node.level) + (node.module or ""), node.lineno


def test_rooms_cover_every_engine_package() -> None:
    """Every package under engine/ is a room, so a new one has to be placed in the order on purpose."""
    packages = {f"engine.{p.parent.name}" for p in (ROOT / "engine").glob("*/__init__.py")}
    assert packages <= set(ENGINE_ROOMS), f"place these packages in ENGINE_ROOMS: {sorted(packages - set(ENGINE_ROOMS))}"


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"b2"}, "b2": {"b"}}, ["b", "b2", "b"]),
    ],
)
def test_cycle_finder_reports_the_cycle(graph: dict[str, set[str]], expected: list[str] | None) -> None:
    """The checker itself finds a cycle and names its modules in order (so a failure says what to break)."""
    assert _cycle(graph) == expected


def test_imports_inside_functions_are_seen(tmp_path: Path) -> None:
    """An import inside a function body or under TYPE_CHECKING is reported like a module-level one."""
    path = tmp_path / "mod.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import engine.model\ndef f():\n    from engine.errors import ParseError\n")
    assert {t for t, _ in _imports("signing.mod", path)} >= {"engine.model", "engine.errors", "engine.errors.ParseError"}
