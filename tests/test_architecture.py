"""The shape of the code: no import cycles between packages, and an engine core that imports nothing
above it. Every import counts, including those inside functions (a cycle hidden in a function is
still a cycle)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from synthloom.errors import ConfigError

SRC = Path(__file__).resolve().parent.parent / "src" / "synthloom"
# the engine core and what it may import (besides the standard library and third-party packages)
CORE_MAY_IMPORT = {
    "pipeline": {"llm", "(errors)", "(records)", "(verdicts)", "(io)", "(text)", "(progress)", "(__init__)"},
    "llm": {"(errors)", "(records)", "(verdicts)", "(io)", "(__init__)"},
}


def node_of(module: str) -> str:
    """The graph node of a module: its top-level package, or "(name)" for a top-level module."""
    parts = module.split(".")
    if len(parts) == 1:
        return "(__init__)"
    return parts[1] if (SRC / parts[1]).is_dir() else f"({parts[1]})"


def import_graph() -> dict[str, dict[str, list[str]]]:
    """node -> imported node -> the places (file:line) that import it."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        source = node_of(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                if name == "synthloom" or name.startswith("synthloom."):
                    target = node_of(name)
                    if target != source:
                        graph[source][target].append(f"{path.relative_to(SRC)}:{node.lineno}")
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_between_packages():
    graph = import_graph()
    found = cycles(graph)
    detail = [f"{a} -> {b}: {graph[a][b][:2]}" for c in found for a in c for b in c if b in graph.get(a, {})]
    assert not found, f"import cycles {found}: {detail}"


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}, "d": {"a": ["w"]}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": ["x"]}, "b": {}}) == []


@pytest.mark.parametrize("core", sorted(CORE_MAY_IMPORT))
def test_the_engine_core_imports_nothing_above_it(core):
    graph = import_graph()
    above = {target: places for target, places in graph.get(core, {}).items() if target not in CORE_MAY_IMPORT[core]}
    assert not above, f"{core} imports {above}"


def test_an_unknown_step_type_with_a_missing_optional_dependency_is_a_config_error(monkeypatch):
    import importlib.metadata

    from synthloom.pipeline import step

    real = importlib.metadata.entry_points

    def with_broken_plugin(**kw):
        found = list(real(**kw))
        return found + [importlib.metadata.EntryPoint("broken", "synthloom_no_such_plugin.steps", step.STEP_ENTRY_POINTS)]

    monkeypatch.setattr(importlib.metadata, "entry_points", with_broken_plugin)
    with pytest.raises(ConfigError, match=r"unknown step type 'nope'.*not loaded: synthloom_no_such_plugin\.steps"):
        step.build_step({"type": "nope"})
    assert "model" in step.STEP_TYPES and "verify_math" in step.STEP_TYPES  # the others still registered
