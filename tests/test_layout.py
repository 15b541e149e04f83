"""The import graph of the library: no circles, no import from a lower layer back up, and every
import of the project's own modules at module level (so the graph is what the files say)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

#: Layers from the bottom up: a module may import its own package and lower layers only.
LAYERS = (
    ("genduel.errors", "genduel.dvcyaml"),  # dvcyaml: dvc.yaml expanded, no genduel import
    ("genduel.config", "genduel.interrupts", "genduel.io", "genduel.timings"),
    ("genduel.runtime", "genduel.checkpoint", "genduel.provenance", "genduel.workdir"),
    ("genduel.seedpool",),  # starts the next seeds' stage commands in workdir's root
    ("genduel.data", "genduel.metrics"),
    ("genduel.models", "genduel.tracking"),
    ("genduel.train",),
    ("genduel.evaluate",),
    ("genduel.report",),
    ("genduel.stage",),
    ("genduel.cli",),  # the `genduel` command: a user-facing entry point above everything
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, modules: set[str]) -> str:
    """``genduel.a.b`` (a module, or a name inside one) -> the module that defines it."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _unit(module: str) -> str:
    """The layer unit of a module: ``genduel.<package>`` or a top-level ``genduel.<module>``."""
    return ".".join(module.split(".")[:2])


def _graph(src: Path = SRC) -> tuple[dict[str, set[str]], list[str]]:
    """(module -> the genduel modules it imports, ``file:line`` of imports inside functions)."""
    files = {_module_name(p, src): p for p in src.rglob("*.py")}
    modules, edges, local = set(files), {}, []
    for name, path in files.items():
        targets = set()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("genduel"):
                found = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names if a.name.startswith("genduel")]
            else:
                continue
            if not found:
                continue
            targets.update(_resolve(f, modules) for f in found)
            if node.col_offset > 0 and not _in_type_checking(tree, node):
                local.append(f"{path.relative_to(src.parent)}:{node.lineno}")
        edges[name] = targets - {name, "genduel"}
    return edges, local


def _in_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    for block in tree.body:
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test):
            if any(n is node for n in ast.walk(block)):
                return True
    return False


EDGES, LOCAL_IMPORTS = _graph()


def test_every_library_module_has_a_layer():
    assert {_unit(m) for m in EDGES} - set(RANK) <= {"genduel"}


def _upward(edges: dict[str, set[str]], module: str) -> list[str]:
    return sorted(t for t in edges[module] if _unit(t) != _unit(module)
                  and RANK.get(_unit(t), 0) >= RANK.get(_unit(module), 0))


def _circle(edges: dict[str, set[str]]) -> list[str]:
    """One import circle as a path of modules, or [] when the graph has none."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = 1
        for t in sorted(edges.get(node, ())):
            if state.get(t) == 1:
                return path + [t]
            if t not in state and (found := visit(t, path + [t])):
                return found
        state[node] = 2
        return []

    for module in sorted(edges):
        if module not in state and (found := visit(module, [module])):
            return found
    return []


@pytest.mark.parametrize("module", sorted(EDGES))
def test_imports_only_go_down(module):
    assert _upward(EDGES, module) == [], f"{module} imports from its own layer or above"


def test_no_import_circles():
    assert _circle(EDGES) == []


def test_project_imports_are_at_module_level():
    pipeline = []
    for path in (ROOT / "pipeline").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import) and node.col_offset > 0 and \
                    "genduel" in ast.unparse(node):
                pipeline.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert LOCAL_IMPORTS + pipeline == []


def test_the_checks_see_each_kind_of_violation(tmp_path):
    src = tmp_path / "src"
    (src / "genduel" / "data").mkdir(parents=True)
    (src / "genduel" / "errors.py").write_text("from genduel.data.a import f\n")  # upward
    (src / "genduel" / "data" / "a.py").write_text("from genduel.data.b import g\n")
    (src / "genduel" / "data" / "b.py").write_text(  # a circle, and an import in a function
        "def g():\n    from genduel.data import a\n")
    edges, local = _graph(src)
    assert _upward(edges, "genduel.errors") == ["genduel.data.a"]
    assert _circle(edges) == ["genduel.data.a", "genduel.data.b", "genduel.data.a"]
    assert local == ["src/genduel/data/b.py:2"]
