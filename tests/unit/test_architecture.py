"""docs/architecture.md stays true, and the package keeps its shape: no import cycles, no
reaching into another module's private names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "netsentinel_websocket"


def relative_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``from .module import names`` in a file, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [alias.name for alias in node.names]
            if node.module:
                found.append((node.module.split(".")[0], names))
            else:  # from . import a, b
                found.extend((name, []) for name in names)
    return found


def test_the_module_table_lists_exactly_the_package():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    table = doc.split("## Modules", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([\w/.]+)` \|", table, re.MULTILINE))
    modules = {p.name for p in PACKAGE.glob("*.py")} | {"static/"}
    assert sorted(listed - modules) == [], "the table names modules that do not exist"
    assert sorted(modules - listed) == [], "modules missing from docs/architecture.md"


def test_no_module_imports_another_in_a_cycle():
    graph = {
        path.stem: {module for module, _ in relative_imports(path)} for path in PACKAGE.glob("*.py")
    }
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, stack: list[str]) -> None:  # depth-first, each module once
        for dep in sorted(graph.get(module, ())):
            if dep in stack:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in done:
                visit(dep, [*stack, dep])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert cycles == []


def test_no_module_imports_another_modules_private_names():
    private = [
        f"{path.name}: from .{module} import {name}"
        for path in PACKAGE.glob("*.py")
        for module, names in relative_imports(path)
        for name in names
        if name.startswith("_")
    ]
    assert private == []


def test_the_close_code_table_holds_every_disconnect_value():
    from netsentinel_websocket import disconnect

    doc = (ROOT / "docs" / "protocol.md").read_text()
    table = doc.split("## Close codes", 1)[1].split("\n## ", 1)[0]
    rows = {
        int(code): reasons
        for code, reasons in re.findall(r"^\| (\d{4}) \|([^|]*)\|", table, re.MULTILINE)
    }
    values = [v for v in vars(disconnect).values() if isinstance(v, disconnect.Disconnect)]
    assert values, "no Disconnect values found"
    missing = [
        f"{v.code} {v.reason!r}"
        for v in values
        if v.code not in rows or (v.reason and f"`{v.reason}`" not in rows[v.code])
    ]
    assert missing == []
