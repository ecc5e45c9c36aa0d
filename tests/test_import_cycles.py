"""No module of ``jepa`` or ``data_pipelines`` imports another in a cycle, and ``data_pipelines``
never imports ``jepa``.

The graph is read from the source (``ast``): every ``import`` statement counts, also those inside
functions (a deferred import hides a cycle from the import-order test but not from a reader).
An edge goes to the module named (``from a.b import c`` -> ``a.b.c`` when ``c`` is a submodule,
else ``a.b``); the implicit import of parent packages is not an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jepa", "data_pipelines")


def module_files() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative import
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in files else mod for a in node.names]
            for t in targets:
                while t and t not in files and "." in t:  # `import a.b.c` of a non-module attribute
                    t = t.rsplit(".", 1)[0]
                if t in files and t != name:
                    graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_graph_sees_known_edges() -> None:
    graph = import_graph(module_files())
    assert "jepa.models.blocks" in graph["jepa.models.vit"]
    assert "jepa.objectives" in graph["jepa.methods.vjepa"] or any(
        m.startswith("jepa.objectives") for m in graph["jepa.methods.vjepa"])
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph(module_files()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_data_pipelines_never_imports_jepa() -> None:
    graph = import_graph(module_files())
    bad = {m: sorted(t for t in ts if t.startswith("jepa")) for m, ts in graph.items() if m.startswith("data_pipelines")}
    assert not {m: t for m, t in bad.items() if t}
