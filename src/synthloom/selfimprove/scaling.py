"""Scale study: held-out accuracy vs number of verified synthetic training examples, with a power law.

Each point fine-tunes a fresh adapter from the base model on the first n examples (nested subsets,
so a larger point sees every example of a smaller one). The fit is on the held-out *error*:
err(n) = a * n^(-b) + c (c = irreducible error), by scipy's curve_fit; with fewer than four
non-zero sizes the floor is fixed at 0 (a straight line in log-log space).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthloom.errors import BadInputError


@dataclass
class PowerLaw:
    a: float
    b: float
    c: float
    r2: float

    def error(self, n: float) -> float:
        return self.a * n ** (-self.b) + self.c

    def accuracy(self, n: float) -> float:
        return 1.0 - self.error(n)

    def to_json(self) -> dict[str, float]:
        return {"a": round(self.a, 4), "b": round(self.b, 4), "c": round(self.c, 4), "r2": round(self.r2, 4)}

    def describe(self) -> str:
        return f"error(n) = {self.a:.3f} * n^-{self.b:.3f} + {self.c:.3f} (R² {self.r2:.3f})"


def fit_power_law(sizes: list[int], accuracies: list[float]) -> PowerLaw:
    """Fit err = a n^-b + c on the points with n > 0 (accuracy in [0, 1])."""
    import numpy as np
    from scipy.optimize import curve_fit

    pts = [(n, 1.0 - acc) for n, acc in zip(sizes, accuracies) if n > 0]
    if len(pts) < 2:
        raise BadInputError("a power-law fit needs at least two training sizes above zero")
    x = np.array([p[0] for p in pts], dtype=float)
    y = np.clip(np.array([p[1] for p in pts], dtype=float), 1e-4, 1.0)
    # start from the log-log line through the points (c = 0): a good guess and the small-data answer
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    a0, b0 = float(math.exp(intercept)), float(max(-slope, 0.0))
    a, b, c = a0, b0, 0.0
    if len(pts) >= 4:
        try:
            (a, b, c), _ = curve_fit(lambda n, a, b, c: a * n ** (-b) + c, x, y, p0=[a0, max(b0, 0.05), 0.0],
                                     bounds=([0.0, 0.0, 0.0], [10.0, 3.0, 1.0]), maxfev=20_000)
        except (RuntimeError, ValueError):
            a, b, c = a0, b0, 0.0  # no convergence: keep the log-log line
    pred = a * x ** (-b) + c
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return PowerLaw(float(a), float(b), float(c), r2)


def plot_scaling(sizes: list[int], accuracies: list[float], fit: PowerLaw | None, path: Path,
                 title: str = "Held-out accuracy vs synthetic training examples") -> list[Path]:
    """Write `path` as .svg and .png (for the HTML report and for markdown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, [100 * a for a in accuracies], "o", color="#1f77b4", label="measured (greedy pass@1)")
    positive = [n for n in sizes if n > 0]
    if fit and positive:
        xs = np.geomspace(min(positive), max(positive) * 2, 100)
        ys = np.array([100 * fit.accuracy(x) for x in xs])
        shown = ys >= 0  # the fit is of the error; below zero accuracy it says nothing
        ax.plot(xs[shown], ys[shown], "-", color="#ff7f0e", label=f"fit: {fit.describe()}")
    if 0 in sizes:
        ax.axhline(100 * accuracies[sizes.index(0)], color="grey", ls="--", lw=1, label="base model (n = 0)")
    ax.set_xscale("symlog", linthresh=max(1, min(positive) if positive else 1))
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("synthetic training examples (verified)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".svg", ".png"):
        target = path.with_suffix(suffix)
        fig.savefig(target, dpi=120)
        written.append(target)
    plt.close(fig)
    return written


def run_scale_study(sizes: list[int], evaluate_size: Callable[[int], dict[str, Any]], out_dir: Path,
                    log: Callable[[str], None] = lambda _msg: None) -> dict[str, Any]:
    """Measure each size with `evaluate_size(n) -> {"pass@1": ...}`, fit, plot, write scaling.json."""
    sizes = sorted(set(sizes))
    points = []
    for n in sizes:
        result = evaluate_size(n)
        points.append({"n": n, **result})
        log(f"n = {n}: held-out pass@1 {result['pass@1']:.3f}")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "scaling.json").write_text(json.dumps({"points": points}, indent=1))  # partial progress
    accs = [p["pass@1"] for p in points]
    fit = fit_power_law(sizes, accs) if sum(1 for n in sizes if n > 0) >= 2 else None
    plots = plot_scaling(sizes, accs, fit, out_dir / "scaling")
    report = {"points": points, "fit": fit.to_json() if fit else None,
              "fit_text": fit.describe() if fit else None, "plots": [p.name for p in plots]}
    (out_dir / "scaling.json").write_text(json.dumps(report, indent=1))
    return report
