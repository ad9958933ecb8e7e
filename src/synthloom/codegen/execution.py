"""Execution feedback: extract code and asserts from model text, rank solutions by CodeT's dual agreement.

After CodeT (Chen et al. 2022) and Code Llama (Rozière et al. 2023): only fenced blocks that compile
are code (prose never runs); tests are `assert`
statements that mention the entry point and compile, the first few per sample (CodeT
`test_case_limit=5`); a solution that passes no test, or code with no tests, is never verified.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass

from synthloom.verify.code import ExecResult

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)
# Top-level statements kept from a solution: definitions and imports (example calls, prints,
# `input()` and demo asserts are dropped so they cannot fail or hang the run before the tests).
_KEEP_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
               ast.AnnAssign)


def _compiles(code: str) -> bool:
    try:
        compile(code, "<candidate>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def code_blocks(text: str) -> list[str]:
    """Fenced blocks that compile (python or untagged); the whole text if it has no fence and compiles."""
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py", "python3")]
    if not blocks and "```" not in text:
        blocks = [text]
    return [b.strip("\n") for b in blocks if b.strip() and _compiles(b)]


def definitions_only(code: str) -> str:
    """The imports, definitions and constant assignments of compilable code, in source order."""
    tree = ast.parse(code)
    lines = code.splitlines()
    kept = []
    for node in tree.body:
        if isinstance(node, _KEEP_NODES):
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            kept.append("\n".join(lines[start - 1: node.end_lineno]))
    return "\n".join(kept)


def first_function_name(text: str) -> str:
    """The name of the first `def` in a text, or ""."""
    m = _DEF.search(text)
    return m.group(1) if m else ""


def extract_solution(text: str, entry_point: str) -> str:
    """Runnable solution code defining `entry_point`, or "" when the text has none."""
    for block in code_blocks(text):
        code = definitions_only(block)
        if re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
            return code
    return ""


def extract_asserts(text: str, entry_point: str, limit: int = 5) -> list[str]:
    """CodeT's test extraction: split on `assert`, keep compilable single asserts that call the entry point."""
    text = "\n".join(body for _, body in _FENCE.findall(text)) or text
    call = re.compile(rf"\b{re.escape(entry_point)}\s*\(")
    tests: list[str] = []
    for piece in re.split(r"\bassert\b", text)[1:]:
        lines = piece.split("\n")
        stmt = ""
        for n in range(1, min(len(lines), 5) + 1):  # an assert may span a few lines
            candidate = "assert " + "\n".join(lines[:n]).strip()
            if _is_single_assert(candidate):
                stmt = candidate
                break
        if stmt and call.search(stmt) and stmt not in tests:
            tests.append(stmt)
        if len(tests) >= limit:
            break
    return tests


def _is_single_assert(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert)


def passed_tests(result: ExecResult, n_tests: int) -> frozenset[int]:
    """Indexes of the tests a run passed; nothing counts from a run that died (timeout, memory, kill)."""
    if result.status not in ("ok", "error") or result.tests_total != n_tests:
        return frozenset()
    return frozenset(range(n_tests)) - frozenset(result.failed_tests)


@dataclass(frozen=True)
class ConsensusSet:
    """Solutions that pass exactly the same tests; CodeT score = |solutions| x |tests passed|."""

    solutions: tuple[int, ...]  # indexes into the sampled solutions (duplicates counted)
    tests: frozenset[int]

    @property
    def score(self) -> int:
        return len(self.solutions) * len(self.tests)


def dual_agreement(passed: Sequence[frozenset[int]]) -> list[ConsensusSet]:
    """Consensus sets ranked best first (score, then more tests, then the earliest solution)."""
    groups: dict[frozenset[int], list[int]] = {}
    for i, tests in enumerate(passed):
        groups.setdefault(tests, []).append(i)
    sets = [ConsensusSet(tuple(idx), tests) for tests, idx in groups.items()]
    return sorted(sets, key=lambda s: (-s.score, -len(s.tests), s.solutions[0]))


def first_passing(passed: Sequence[frozenset[int]], n_tests: int) -> int | None:
    """Code Llama's rule: the first solution that passes every test (None if none does)."""
    if n_tests == 0:
        return None
    return next((i for i, tests in enumerate(passed) if len(tests) == n_tests), None)
