"""Symbolic (AlphaGeometry-style) math problem generator: premises -> deduction -> traceback.

Public API: ``generate_problems``, ``iter_problems``, ``FAMILIES``, and ``check_with_sympy`` for
the independent check of a generated problem.
"""

from synthloom.mathgen.families import ALGEBRA_FAMILIES, FAMILIES, WORD_FAMILIES
from synthloom.mathgen.generator import build_problem, generate_problems, iter_problems

__all__ = [
    "ALGEBRA_FAMILIES",
    "FAMILIES",
    "WORD_FAMILIES",
    "build_problem",
    "generate_problems",
    "iter_problems",
]
