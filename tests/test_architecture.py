"""The shape of the code: imports point down the layers (design.md), no import cycles, no file over 600
lines, torch and Qt only where they belong."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"
MAX_LINES = 600
LAYERS = {  # layer -> the layers it may import
    "core": {"core"},
    "refiner": {"refiner", "core"},
    "services": {"services", "refiner", "core"},
    "gui": {"gui", "services", "refiner", "core"},
    "cli": {"cli", "services"},
    "entry": {"entry", "cli", "gui", "core"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "entry"


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The app modules ``path`` imports (also inside functions, unless ``top_level_only``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # what runs on import, including `if TYPE_CHECKING:` blocks (they make cycles for readers)
        nodes = [n for stmt in tree.body for n in ([stmt, *stmt.body] if isinstance(stmt, ast.If) else [stmt])]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("app.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if (APP.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(".py").exists()}
    return found


SOURCES = sorted(APP.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_layers(path: Path) -> None:
    module = module_name(path)
    allowed = LAYERS[layer_of(module)]
    wrong = sorted(m for m in imports(path) if layer_of(m) not in allowed)
    assert not wrong, f"{module} ({layer_of(module)}) imports {wrong}"


def test_no_import_cycles() -> None:
    graph = {module_name(p): {m for m in imports(p, top_level_only=True)} for p in SOURCES}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph or nxt == node or node.startswith(nxt + "."):  # a package's own __init__
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


@pytest.mark.parametrize("folder", ["app", "tests", "benchmarks", "scripts", "packaging"])
def test_no_file_over_600_lines(folder: str) -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long


def test_torch_and_qt_stay_in_their_layers() -> None:
    for path in SOURCES:
        layer = layer_of(module_name(path))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
        anywhere = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        anywhere |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        if layer in ("core", "services", "refiner"):
            assert "PySide6" not in anywhere and "qtawesome" not in anywhere, path
        if layer in ("core", "services", "cli", "entry"):
            assert "torch" not in top, f"{path} imports torch at the top"
        if layer == "core":
            assert "torch" not in anywhere, path
