"""Raw and AlpacaEval-2 length-controlled (LC) win rates (Dubois et al. 2024).

Preferences use AlpacaEval's scale: 1 = the baseline (output_1) wins, 2 = the model (output_2)
wins, 1.5 (or 0) = draw, anything in between = a soft preference from the judge's logprobs.

The LC win rate fits alpaca_eval's `length_controlled_v1` GLM:

    P(model wins) = sigmoid(w_len * tanh(std_delta_len) + w_diff * difficulty + w_base * 1)

no intercept, where std_delta_len = (len(output_1) - len(output_2)) / std over the annotations
(characters, sample std). The fit is an L1 logistic regression (liblinear) chosen by 5-fold
GroupKFold CV over C, on soft labels: each row appears once with y=1 weighted p and once with y=0
weighted 1-p, both in the same CV group, scored by the continuous log loss. Optional "gamed"
annotations of the verbose/concise baselines (alpaca_eval's df_gamed.csv) regularise the fit
towards the baseline with total weight lambda (lambda/2 each). LC = 100 x mean prediction with
the length feature zeroed. Data order, the C grid and the seed follow alpaca_eval so results agree
with its `get_length_controlled_winrate` (checked in tests/test_eval_lc_winrate.py).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthloom.errors import BadInputError
from synthloom.io import read_rows

FEATURES = ("np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline.astype(float)")


@dataclass
class WinRate:
    win_rate: float
    standard_error: float
    n_wins: int
    n_wins_base: int
    n_draws: int
    n_total: int
    discrete_win_rate: float


@dataclass
class LCWinRate(WinRate):
    length_controlled_winrate: float = math.nan
    lc_standard_error: float = math.nan
    weights: dict[str, float] = field(default_factory=dict)
    best_c: float = math.nan
    glm: str = "length_controlled_v1"
    predictions: list[float] = field(default_factory=list)

    def to_dict(self, with_predictions: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_predictions:
            d.pop("predictions")
        return d


# ---- typed loading ------------------------------------------------------------------------------
# CSV cells are strings, so `bool("False")` is True and a gamed-baseline row would count as the
# model's own annotation. Every input goes through a schema: each column is coerced to its type
# or the load fails with one line naming the file, the row and the column.
ANNOTATION_SCHEMA = {"output_1": "str", "output_2": "str", "preference": "float?",
                     "index": "int~", "instruction_difficulty": "float~"}
GAMED_SCHEMA = {"index": "int", "preference": "float", "std_delta_len": "float",
                "instruction_difficulty": "float", "not_gamed_baseline": "bool"}
_TRUE, _FALSE = {"true", "1", "1.0", "yes"}, {"false", "0", "0.0", "no"}


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "") or (
        isinstance(value, float) and math.isnan(value))


def as_bool(value: Any) -> bool:
    """A boolean from a real bool, 0/1, or the strings True/False/1/0 (any case); else BadInputError."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BadInputError(f"expected a boolean (True/False/1/0), got {value!r}")


def _coerce(value: Any, kind: str) -> Any:
    base = kind.rstrip("?~")
    if base == "str" and isinstance(value, str):
        return value  # an empty output is still an output (length 0)
    if _is_blank(value):
        if kind.endswith(("?", "~")):
            return None
        raise BadInputError("empty value")
    if base == "bool":
        return as_bool(value)
    if base == "str":
        raise BadInputError(f"expected text, got {type(value).__name__} {value!r}")
    if isinstance(value, bool):
        raise BadInputError(f"expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"expected a number, got {value!r}") from None
    if base == "int":
        if not number.is_integer():
            raise BadInputError(f"expected an integer, got {value!r}")
        return int(number)
    return number


def typed_rows(rows: Sequence[Mapping[str, Any]], schema: Mapping[str, str], source: str) -> list[dict[str, Any]]:
    """Rows with every schema column coerced to its type.

    Kinds: str, float, int, bool (required); a trailing `?` allows an empty cell (None); `~` marks
    an optional column (it may be absent; when present, empty cells are None).
    """
    if not rows:
        raise BadInputError(f"{source} has no rows")
    present = set().union(*(r.keys() for r in rows))
    missing = [c for c, k in schema.items() if not k.endswith("~") and c not in present]
    if missing:
        raise BadInputError(f"{source} lacks column(s) {', '.join(missing)} (has {', '.join(sorted(present)) or 'none'})")
    out = []
    for i, row in enumerate(rows):
        typed = dict(row)
        for col, kind in schema.items():
            if col not in row:
                if kind.endswith("~"):
                    continue
                raise BadInputError(f"{source} row {i}: column {col!r} is missing")
            try:
                typed[col] = _coerce(row[col], kind)
            except BadInputError as e:
                raise BadInputError(f"{source} row {i}, column {col!r}: {e}") from None
        out.append(typed)
    return out


def load_annotations(path: str | Path) -> list[dict[str, Any]]:
    """Annotations (CSV, JSONL or Parquet) typed by ANNOTATION_SCHEMA."""
    return typed_rows(read_rows(path), ANNOTATION_SCHEMA, str(path))


def load_gamed(path: str | Path) -> list[dict[str, Any]]:
    """alpaca_eval df_gamed.csv-style rows (any format) typed by GAMED_SCHEMA."""
    return typed_rows(read_rows(path), GAMED_SCHEMA, str(path))


def difficulties_from_gamed(rows: Sequence[Mapping[str, Any]], gamed: Sequence[Mapping[str, Any]]) -> list[float]:
    """Per annotation, the instruction difficulty df_gamed lists for its instruction.

    As alpaca_eval: the first df_gamed row of each `index` gives that instruction's difficulty; an
    annotation's instruction is its `index` column, else its position in the file.
    """
    by_index: dict[int, float] = {}
    for g in gamed:
        by_index.setdefault(int(g["index"]), float(g["instruction_difficulty"]))
    out = []
    for pos, r in enumerate(rows):
        key = r.get("index")
        key = pos if key is None else int(key)
        if key not in by_index:
            raise BadInputError(f"the gamed table has no instruction_difficulty for instruction index {key}")
        out.append(by_index[key])
    return out


def _sem(x: np.ndarray) -> float:
    """Standard error of the mean with the sample std (ddof=1), as pandas' Series.sem."""
    return float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


def normalise_preference(value: Any) -> float:
    """A preference on the 1..2 scale (0 means draw); raises BadInputError for anything else."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"preference must be a number in [1, 2] (or 0 for a draw), got {value!r}") from None
    if p == 0.0:
        return 1.5
    if not 1.0 <= p <= 2.0:
        raise BadInputError(f"preference must be in [1, 2] (or 0 for a draw), got {value!r}")
    return p


def raw_win_rate(preferences: Sequence[Any]) -> WinRate:
    """AlpacaEval's head-to-head summary: soft win rate (draws count 1/2), SE, counts, discrete rate."""
    if len(preferences) == 0:
        raise BadInputError("no preferences to compute a win rate from")
    raw = [float(p) for p in preferences]
    p = np.array([normalise_preference(v) for v in raw]) - 1.0
    draws = sum(1 for v in raw if v in (0.0, 1.5))
    discrete = np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5))
    return WinRate(
        win_rate=float(p.mean() * 100), standard_error=_sem(p) * 100,
        n_wins=int((p > 0.5).sum()), n_wins_base=int((p < 0.5).sum()), n_draws=draws,
        n_total=len(p), discrete_win_rate=float(discrete.mean() * 100),
    )


def _column(rows: Sequence[Mapping[str, Any]], key: str, what: str) -> list[Any]:
    try:
        return [r[key] for r in rows]
    except KeyError:
        raise BadInputError(f"every {what} needs a {key!r} field") from None


def _fit_soft_logistic(x: np.ndarray, p: np.ndarray, weight: np.ndarray, n_splits: int) -> Any:
    """L1 logistic regression on soft labels, C chosen by GroupKFold CV on the continuous log loss."""
    import sklearn
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    n = len(p)
    groups = np.concatenate([np.arange(n), np.arange(n)])
    xx = np.concatenate([x, x])
    yy = np.concatenate([np.ones(n, dtype=int), np.zeros(n, dtype=int)])
    true_prob = np.concatenate([p, 1 - p])  # probability of the duplicated row's label
    true_weight = np.concatenate([weight, weight])

    def continuous_log_loss(y_true: np.ndarray, y_pred: np.ndarray, true_prob: np.ndarray,
                            true_sample_weight: np.ndarray) -> float:
        # y_true is the duplicated 0/1 label; true_prob says how likely that label is: undo it
        target = np.where(y_true == 1, true_prob, 1 - true_prob)
        q = np.clip(y_pred, 1e-15, 1 - 1e-15)
        return float(-np.mean((target * np.log(q) + (1 - target) * np.log(1 - q)) * true_sample_weight))

    params = LogisticRegressionCV().get_params()
    kwargs: dict[str, Any] = {"random_state": 123, "dual": False, "solver": "liblinear", "fit_intercept": False,
                                  "cv": GroupKFold(n_splits=n_splits)}
    if "use_legacy_attributes" in params:
        kwargs["use_legacy_attributes"] = False
    if "penalty" in params and params["penalty"] == "deprecated":
        kwargs["l1_ratios"] = (1.0,)  # scikit-learn >= 1.8 spelling of penalty="l1"
    else:
        kwargs["penalty"] = "l1"
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scorer = make_scorer(continuous_log_loss, response_method="predict_proba", greater_is_better=False)
        scorer = scorer.set_score_request(true_prob=True, true_sample_weight=True)
        model = LogisticRegressionCV(scoring=scorer, **kwargs)
        model.set_fit_request(sample_weight=True)
        model.fit(xx, yy, sample_weight=true_prob * true_weight, groups=groups,
                  true_prob=true_prob, true_sample_weight=true_weight)
    return model


def length_controlled_winrate(
    annotations: Sequence[Mapping[str, Any]],
    instruction_difficulty: Sequence[float] | Mapping[Any, float] | None = None,
    gamed: Sequence[Mapping[str, Any]] | None = None,
    regularize_to_baseline_lambda: float | None = 0.2,
    n_splits: int = 5,
) -> LCWinRate:
    """LC win rate of output_2 (the model) against output_1 (the baseline).

    `annotations`: dicts with output_1, output_2, preference (1..2) and, optionally,
    instruction_difficulty and index (the instruction id, used to look difficulties up).
    `instruction_difficulty`: per annotation (a sequence) or per index (a mapping); when neither
    this nor the column is given, they come from `gamed` (its first row per `index`, as
    alpaca_eval does), and without `gamed` the difficulty term is dropped (alpaca_eval's
    `length_controlled_minimal` GLM).
    `gamed`: rows like alpaca_eval's df_gamed.csv (index, preference in [0,1], std_delta_len,
    instruction_difficulty, not_gamed_baseline=False) to regularise towards the baseline; typed
    by GAMED_SCHEMA, so CSV strings "False"/"0" are false.
    """
    rows = list(annotations)
    if len(rows) < n_splits:
        raise BadInputError(f"need at least {n_splits} annotations for {n_splits}-fold CV, got {len(rows)}")
    raw = raw_win_rate(_column(rows, "preference", "annotation"))
    out1 = [str(v) for v in _column(rows, "output_1", "annotation")]
    out2 = [str(v) for v in _column(rows, "output_2", "annotation")]
    delta = np.array([len(a) - len(b) for a, b in zip(out1, out2)], dtype=float)
    std = float(np.std(delta, ddof=1))
    if not std > 0:
        raise BadInputError("all length differences are equal: the length term cannot be standardised")
    std_delta = delta / std
    pref = np.array([normalise_preference(r["preference"]) for r in rows]) - 1.0

    g = typed_rows(list(gamed), GAMED_SCHEMA, "gamed annotations") if gamed else None
    difficulty = _difficulties(rows, instruction_difficulty)
    if difficulty is None and g is not None:  # alpaca_eval reads the difficulties from df_gamed
        difficulty = np.array(difficulties_from_gamed(rows, g))
    use_difficulty = difficulty is not None
    diff = difficulty if difficulty is not None else np.zeros(len(rows))

    x = np.column_stack([np.tanh(std_delta), diff, np.ones(len(rows))])
    weight = np.ones(len(rows))
    if g is not None and regularize_to_baseline_lambda:
        gx = np.column_stack([
            np.tanh(np.array([float(r["std_delta_len"]) for r in g])),
            np.array([float(r["instruction_difficulty"]) for r in g]) if use_difficulty else np.zeros(len(g)),
            np.array([float(r["not_gamed_baseline"]) for r in g]),
        ])
        gp = np.array([float(r["preference"]) for r in g])
        gw = np.where(gx[:, 2] > 0, 1.0, regularize_to_baseline_lambda / 2)
        x, pref_fit, weight = np.vstack([gx, x]), np.concatenate([gp, pref]), np.concatenate([gw, weight])
    else:
        pref_fit = pref
    columns = [0, 1, 2] if use_difficulty else [0, 2]
    model = _fit_soft_logistic(x[:, columns], pref_fit, weight, n_splits)

    test = np.column_stack([np.zeros(len(rows)), diff, np.ones(len(rows))])[:, columns]
    pred = model.predict_proba(test)[:, 1]
    coef = model.coef_[0]
    weights = {FEATURES[c]: float(w) for c, w in zip(columns, coef)}
    c_best = model.C_[0] if np.ndim(model.C_) else model.C_
    return LCWinRate(
        **asdict(raw), length_controlled_winrate=float(pred.mean() * 100), lc_standard_error=_sem(pred) * 100,
        weights=weights, best_c=float(c_best),
        glm=("length_controlled_v1" if gamed and regularize_to_baseline_lambda else "length_controlled_noreg")
        if use_difficulty else "length_controlled_minimal",
        predictions=[float(v) for v in pred],
    )


def _difficulties(rows: list[Mapping[str, Any]], given: Sequence[float] | Mapping[Any, float] | None) -> np.ndarray | None:
    if given is None:
        if all("instruction_difficulty" in r and r["instruction_difficulty"] is not None for r in rows):
            return np.array([float(r["instruction_difficulty"]) for r in rows])
        return None
    if isinstance(given, Mapping):
        keys = _column(rows, "index", "annotation (difficulties given per index)")
        missing = [k for k in keys if k not in given]
        if missing:
            raise BadInputError(f"no instruction difficulty for index {missing[0]!r}")
        return np.array([float(given[k]) for k in keys])
    values = np.asarray(list(given), dtype=float)
    if len(values) != len(rows):
        raise BadInputError(f"got {len(values)} instruction difficulties for {len(rows)} annotations")
    return values
