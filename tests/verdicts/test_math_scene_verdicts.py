"""Every registered verifier on its labelled adversarial cases: precision of ok >= 99.5%, recall >= 90%."""

from __future__ import annotations

import pytest

from verdicts.suites import SUITES, load_cases, score


@pytest.mark.parametrize("name", sorted(SUITES))
def test_verifier_meets_the_bar_on_its_adversarial_cases(name: str) -> None:
    suite = SUITES[name]
    result = score(suite)
    assert result.n >= suite.min_cases, f"{name}: only {result.n} cases"
    assert result.labelled_ok and result.n - result.labelled_ok, f"{name}: needs cases of both labels"
    assert result.precision >= suite.min_precision, f"{name}: false accepts {result.false_accepts}"
    assert result.recall >= suite.min_recall, f"{name}: misses {result.misses}"


@pytest.mark.parametrize("name", sorted(SUITES))
def test_cases_cover_the_adversarial_kinds_and_real_model_outputs(name: str) -> None:
    cases = load_cases(SUITES[name].cases)
    assert len({c["id"] for c in cases}) == len(cases)
    assert sum(c["source"].startswith("embedded:") for c in cases) >= 50
    tags = {t for c in cases for t in c["tags"]}
    wanted = {"math": {"hedge", "negation", "competing", "truncated", "no_marker", "latex", "units", "echo", "empty"},
              "scene": {"count", "colour", "relation", "exists", "label", "detail"}}.get(name, set())
    assert wanted <= tags, wanted - tags
