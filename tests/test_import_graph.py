"""The house's layers, read from the source (every import, at the top or inside a function): no two modules import
each other, directly or in a loop, and the app (ui/) and the trainer (train/) never import each other."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def modules() -> dict[str, Path]:
    files = [*ROOT.glob("vlm_demo/**/*.py"), *ROOT.glob("train/**/*.py"), ROOT / "app.py"]
    names = {}
    for path in files:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        names[name.removesuffix(".__init__")] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a name imported from a package counts as its submodule if one)."""
    known, graph = modules(), defaultdict(set)
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [base]).strip(".")
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph.get(module, ()):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for module in list(graph):
        if module not in index:
            visit(module)
    return found


def test_no_two_modules_import_each_other_directly_or_in_a_loop():
    assert loops(import_graph()) == []


def test_the_loop_finder_finds_a_loop_of_three():
    assert loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_app_and_the_trainer_never_import_each_other():
    graph = import_graph()
    crossing = [(module, other) for module, others in graph.items() for other in others
                if (module.startswith("vlm_demo.ui") and other.startswith("train"))
                or (module.startswith("train") and other.startswith("vlm_demo.ui"))]
    assert crossing == []
