"""LC win rate: equal to alpaca_eval's own get_length_controlled_winrate on generated annotations."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest
import sklearn

from synthloom.errors import BadInputError
from synthloom.eval.lc_winrate import length_controlled_winrate, raw_win_rate

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # alpaca_eval uses deprecated sklearn options


def _alpaca_glm():
    # alpaca_eval imports pkg_resources only for version checks; setuptools >= 81 no longer ships it.
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            sys.modules["pkg_resources"] = types.ModuleType("pkg_resources")
    glm = pytest.importorskip("alpaca_eval.metrics.glm_winrate")
    return glm


def _data(n: int, seed: int, model_bias: float):
    """Annotations with soft preferences driven by length and difficulty, plus a df_gamed-like table."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(size=n)
    gamed = []
    for name, shift in (("verbose", 1.2), ("concise", -1.2)):
        for i in range(n):  # each gamed model covers every instruction in index order, like df_gamed.csv
            sd = rng.normal() + shift
            p = 1 / (1 + np.exp(-(np.tanh(sd) * 0.8 + 0.4 * difficulty[i] + rng.normal() * 0.3)))
            gamed.append({"model": name, "index": i, "preference": float(p), "std_delta_len": float(sd),
                          "instruction_difficulty": float(difficulty[i]), "not_gamed_baseline": False})
    annotations = []
    for i in range(n):
        len_base, len_model = int(rng.integers(40, 900)), int(rng.integers(40, 900))
        logit = model_bias + 0.003 * (len_model - len_base) - 0.5 * difficulty[i] + rng.normal() * 0.5
        pref = 1 + 1 / (1 + np.exp(-logit))
        if i % 17 == 0:
            pref = 1.5  # exact draws
        annotations.append({"instruction": f"instruction {i}", "output_1": "b" * len_base, "output_2": "m" * len_model,
                            "preference": float(pref), "generator_1": "baseline", "generator_2": "model",
                            "annotator": "test_judge"})
    return annotations, difficulty, gamed


@pytest.mark.parametrize("n,seed,bias", [(90, 0, 0.6), (150, 1, -0.4)])
def test_lc_winrate_equals_alpaca_eval(tmp_path, monkeypatch, n, seed, bias):
    glm = _alpaca_glm()
    annotations, difficulty, gamed = _data(n, seed, bias)
    gamed_csv = tmp_path / "df_gamed.csv"
    pd.DataFrame(gamed).to_csv(gamed_csv, index=False)
    monkeypatch.setattr(glm, "hf_hub_download", lambda **kwargs: str(gamed_csv))  # no hub access in tests

    with sklearn.config_context():  # alpaca_eval flips global sklearn config; keep it local
        theirs = glm.get_length_controlled_winrate(pd.DataFrame(annotations), save_weights_dir=None)
    ours = length_controlled_winrate(annotations, instruction_difficulty=list(difficulty),
                                     gamed=pd.read_csv(gamed_csv).to_dict("records"))

    for key in ("win_rate", "standard_error", "discrete_win_rate", "length_controlled_winrate", "lc_standard_error"):
        assert getattr(ours, key) == pytest.approx(float(theirs[key]), abs=1e-6), key
    for key in ("n_wins", "n_wins_base", "n_draws", "n_total"):
        assert getattr(ours, key) == int(theirs[key]), key
    assert ours.glm == "length_controlled_v1"
    # LC removes the length effect, so it differs from the raw rate here (lengths drive preferences)
    assert ours.length_controlled_winrate != pytest.approx(ours.win_rate, abs=1e-3)
    assert ours.weights["np.tanh(std_delta_len)"] < 0  # longer model output (negative delta) wins more


def test_lc_without_gamed_matches_alpaca_noreg(tmp_path, monkeypatch):
    glm = _alpaca_glm()
    annotations, difficulty, gamed = _data(80, 3, 0.2)
    gamed_csv = tmp_path / "df_gamed.csv"
    pd.DataFrame(gamed).to_csv(gamed_csv, index=False)  # only its difficulties are used by noreg
    monkeypatch.setattr(glm, "hf_hub_download", lambda **kwargs: str(gamed_csv))
    with sklearn.config_context():
        theirs = glm.get_length_controlled_winrate(annotations, glm_name="length_controlled_noreg",
                                                   save_weights_dir=None)
    rows = [a | {"instruction_difficulty": float(d)} for a, d in zip(annotations, difficulty)]
    ours = length_controlled_winrate(rows, regularize_to_baseline_lambda=None)
    assert ours.glm == "length_controlled_noreg"
    assert ours.length_controlled_winrate == pytest.approx(float(theirs["length_controlled_winrate"]), abs=1e-6)


def test_lc_without_difficulty_drops_the_term():
    annotations, _, _ = _data(60, 4, 0.0)
    result = length_controlled_winrate(annotations)
    assert result.glm == "length_controlled_minimal"
    assert set(result.weights) == {"np.tanh(std_delta_len)", "not_gamed_baseline.astype(float)"}
    assert 0 <= result.length_controlled_winrate <= 100


def test_raw_win_rate_counts_draws_as_half():
    r = raw_win_rate([2, 1, 0, 1.5, 1.75])
    assert r.win_rate == pytest.approx((1 + 0 + 0.5 + 0.5 + 0.75) / 5 * 100)
    assert (r.n_wins, r.n_wins_base, r.n_draws, r.n_total) == (2, 1, 2, 5)
    assert r.discrete_win_rate == pytest.approx((1 + 0 + 0.5 + 0.5 + 1) / 5 * 100)


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(BadInputError, match="preference must be in"):
        raw_win_rate([2.5])
    with pytest.raises(BadInputError, match="at least 5"):
        length_controlled_winrate([{"output_1": "a", "output_2": "b", "preference": 2}])
    same = [{"output_1": "aa", "output_2": "b", "preference": 1.2 + i / 10} for i in range(6)]
    with pytest.raises(BadInputError, match="length differences"):
        length_controlled_winrate(same)
