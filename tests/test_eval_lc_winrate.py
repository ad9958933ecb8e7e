"""LC win rate: equal to alpaca_eval's own get_length_controlled_winrate on generated annotations."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest
import sklearn

from typer.testing import CliRunner

from synthloom.cli import app as cli_app
from synthloom.errors import BadInputError
from synthloom.eval.lc_winrate import (
    ANNOTATION_SCHEMA,
    GAMED_SCHEMA,
    as_bool,
    length_controlled_winrate,
    load_gamed,
    raw_win_rate,
    typed_rows,
)

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


# ---- `synthloom eval winrate` on files, against alpaca_eval itself -------------------------------
def _write(df: pd.DataFrame, path):
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    return path


def _cli_summary(tmp_path, *args):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli_app, ["eval", "winrate", *map(str, args), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = __import__("json").loads((out / "report.json").read_text())
    return report["summary"], report["notes"]


@pytest.mark.parametrize("n,seed,bias,fmt,false_as", [(90, 0, 0.6, "csv", None), (150, 1, -0.4, "jsonl", "0"),
                                                      (120, 5, 1.0, "parquet", "False")])
def test_cli_winrate_equals_alpaca_eval_on_files(tmp_path, monkeypatch, n, seed, bias, fmt, false_as):
    """The CLI path: annotations in any format, df_gamed.csv as alpaca_eval downloads it (bools as
    the strings pandas writes, or 0/1), difficulties taken from df_gamed as alpaca_eval does."""
    glm = _alpaca_glm()
    annotations, _, gamed = _data(n, seed, bias)
    gamed_df = pd.DataFrame(gamed)
    gamed_csv = _write(gamed_df, tmp_path / "df_gamed.csv")
    monkeypatch.setattr(glm, "hf_hub_download", lambda **kwargs: str(gamed_csv))
    with sklearn.config_context():
        theirs = glm.get_length_controlled_winrate(pd.DataFrame(annotations), save_weights_dir=None)
    if false_as is not None:  # the same table with the booleans spelled another way
        gamed_csv = _write(gamed_df.assign(not_gamed_baseline=false_as), tmp_path / "df_gamed_alt.csv")
    ann = _write(pd.DataFrame(annotations), tmp_path / f"annotations.{fmt}")
    ours, notes = _cli_summary(tmp_path, ann, "--gamed", gamed_csv)
    assert ours["glm"] == "length_controlled_v1"
    assert any("difficulties taken from" in x for x in notes)
    for key in ("win_rate", "standard_error", "discrete_win_rate", "length_controlled_winrate", "lc_standard_error"):
        assert ours[key] == pytest.approx(float(theirs[key]), abs=1e-6), key
    for key in ("n_wins", "n_wins_base", "n_draws", "n_total"):
        assert ours[key] == int(theirs[key]), key


def test_gamed_rows_count_as_gamed_whatever_the_bool_spelling():
    annotations, difficulty, gamed = _data(60, 7, 0.3)
    spelled = [g | {"not_gamed_baseline": spelling} for g, spelling in zip(gamed, ["False", "0", "false", 0] * len(gamed))]
    a = length_controlled_winrate(annotations, instruction_difficulty=list(difficulty), gamed=gamed)
    b = length_controlled_winrate(annotations, instruction_difficulty=list(difficulty), gamed=spelled)
    assert b.length_controlled_winrate == a.length_controlled_winrate
    # and without explicit difficulties the gamed table supplies them (not the minimal GLM)
    c = length_controlled_winrate(annotations, gamed=spelled)
    assert c.glm == "length_controlled_v1" and c.length_controlled_winrate == pytest.approx(a.length_controlled_winrate)


def test_typed_loading_rejects_bad_cells_with_one_line_errors(tmp_path):
    assert [as_bool(v) for v in ("True", "false", "1", "0", 1, 0.0, True)] == [True, False, True, False, True, False, True]
    for bad in ("maybe", "2", 2, "", None, "Falsch"):
        with pytest.raises(BadInputError):
            as_bool(bad)
    good = {"index": "3", "preference": "0.4", "std_delta_len": "-1.5", "instruction_difficulty": "0.2",
            "not_gamed_baseline": "False"}
    row = typed_rows([good], GAMED_SCHEMA, "g.csv")[0]
    assert row == {"index": 3, "preference": 0.4, "std_delta_len": -1.5, "instruction_difficulty": 0.2,
                   "not_gamed_baseline": False}
    cases = [({"not_gamed_baseline": "perhaps"}, "row 0, column 'not_gamed_baseline': expected a boolean"),
             ({"preference": "high"}, "column 'preference': expected a number"),
             ({"index": "2.5"}, "expected an integer"),
             ({"std_delta_len": ""}, "column 'std_delta_len': empty value")]
    for change, message in cases:
        with pytest.raises(BadInputError, match=message) as e:
            typed_rows([good | change], GAMED_SCHEMA, "g.csv")
        assert "\n" not in str(e.value)
    with pytest.raises(BadInputError, match="lacks column.*std_delta_len, not_gamed_baseline"):
        typed_rows([{"index": 1, "preference": 0.5, "instruction_difficulty": 0}], GAMED_SCHEMA, "g.csv")
    ann = typed_rows([{"output_1": "a", "output_2": "b", "preference": ""}], ANNOTATION_SCHEMA, "a.csv")[0]
    assert ann["preference"] is None and "index" not in ann  # empty preference = unrated, optional index absent
    with pytest.raises(BadInputError, match="expected text"):
        typed_rows([{"output_1": 5, "output_2": "b", "preference": 2}], ANNOTATION_SCHEMA, "a.jsonl")
    bad = tmp_path / "df_gamed.csv"
    pd.DataFrame([good | {"not_gamed_baseline": "sometimes"}]).to_csv(bad, index=False)
    with pytest.raises(BadInputError, match="df_gamed.csv row 0"):
        load_gamed(bad)


def test_cli_winrate_errors_are_one_line(tmp_path):
    ann = _write(pd.DataFrame([{"output_1": "a" * i, "output_2": "b", "preference": 1.5} for i in range(8)]),
                 tmp_path / "a.csv")
    result = CliRunner().invoke(cli_app, ["eval", "winrate", str(ann.with_name("none.csv"))])
    assert result.exit_code != 0 and "does not exist" in str(result.exception)
    gamed = _write(pd.DataFrame([{"index": 0, "preference": 0.5}]), tmp_path / "g.csv")
    result = CliRunner().invoke(cli_app, ["eval", "winrate", str(ann), "--gamed", str(gamed), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, BadInputError)
    assert "lacks column(s) std_delta_len, instruction_difficulty, not_gamed_baseline" in str(result.exception)


def test_cli_winrate_without_difficulties_equals_alpaca_eval_minimal(tmp_path, monkeypatch):
    glm = _alpaca_glm()
    annotations, _, gamed = _data(100, 9, 0.5)
    monkeypatch.setattr(glm, "hf_hub_download", lambda **kwargs: str(_write(pd.DataFrame(gamed), tmp_path / "g.csv")))
    with sklearn.config_context():
        theirs = glm.get_length_controlled_winrate(pd.DataFrame(annotations), glm_name="length_controlled_minimal",
                                                   save_weights_dir=None)
    ours, notes = _cli_summary(tmp_path, _write(pd.DataFrame(annotations), tmp_path / "a.csv"))
    assert ours["glm"] == "length_controlled_minimal" and any("length_controlled_minimal" in x for x in notes)
    assert ours["length_controlled_winrate"] == pytest.approx(float(theirs["length_controlled_winrate"]), abs=1e-6)
    assert ours["length_controlled_winrate"] != pytest.approx(50.0, abs=0.5)
