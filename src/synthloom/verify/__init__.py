"""Verifiers: each turns one row into a verdict ``{"ok": bool, "detail": str}``.

Submodules: ``math`` (answer extraction and sympy equivalence), ``code`` (sandboxed execution).
Nothing is imported here so that using one verifier never pays for another's dependencies.
"""
