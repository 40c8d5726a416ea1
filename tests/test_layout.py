"""The layout docs/contributing.md describes: every module in its table, and each importing only
the modules below it, so that the file list shows the architecture."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flex_participants"
CONTRIBUTING = ROOT / "docs" / "contributing.md"


def documented_order() -> list[str]:
    """The modules of the architecture table, top to bottom."""
    text = CONTRIBUTING.read_text()
    section = text.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([\w.]+)` \|", section, re.MULTILINE)


def unit_of(path: Path) -> str:
    """The row of the table a source file belongs to: its module, or its subpackage."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if len(parts) > 1:
        return parts[0]
    return "flex_participants" if parts[0] == "__init__" else parts[0]


def units() -> set[str]:
    return {unit_of(path) for path in PACKAGE.rglob("*.py")}


def _resolve(path: Path, node: ast.ImportFrom | ast.Import) -> Iterator[str]:
    """The dotted names of the package's modules an import statement of ``path`` loads."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = list(path.relative_to(ROOT).with_suffix("").parts)[: -node.level]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    for alias in node.names:
        # `from .. import _events` loads a module; `from ._client import FlexClient` a name.
        candidate = f"{prefix}.{alias.name}"
        as_path = ROOT.joinpath(*candidate.split("."))
        yield candidate if as_path.with_suffix(".py").exists() or as_path.is_dir() else prefix


def _runtime_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement below ``node`` but those under ``if TYPE_CHECKING:``."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
        return
    children: list[ast.AST] = list(ast.iter_child_nodes(node))
    if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
        children = list(node.orelse)
    for child in children:
        yield from _runtime_imports(child)


def imports_of(path: Path) -> set[str]:
    """The rows of the table that the source file ``path`` imports at run time."""
    found = set()
    for node in _runtime_imports(ast.parse(path.read_text())):
        for name in _resolve(path, node):
            parts = name.split(".")
            if parts[0] != "flex_participants":
                continue
            found.add(parts[1] if len(parts) > 1 else "flex_participants")
    return found - {unit_of(path)}


def test_the_architecture_table_lists_every_module_once() -> None:
    order = documented_order()

    assert len(order) == len(set(order)), order
    assert set(order) == units()


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_a_module_imports_only_modules_below_it_in_the_table(path: Path) -> None:
    order = documented_order()
    position = order.index(unit_of(path))

    above = {name for name in imports_of(path) if order.index(name) < position}

    assert not above, f"{path.relative_to(ROOT)} imports {sorted(above)}, above it"
