"""The self-improvement experiment of docs/experiments/self_improvement.md, as one function/command.

1. Baseline: greedy held-out accuracy of SmolLM2-135M-Instruct (the scale study's n = 0 point).
2. Scaling curve: LoRA fine-tunes on n verified synthetic solutions from the symbolic generator,
   held-out accuracy vs n, power-law fit and plot.
3. ReST-EM / STaR: the model's own verified solutions (plus hinted rationalisations), fine-tuned from
   the base each iteration; pass@1, pass@k and diversity per iteration.
Writes report.md (tables + plot) and report.json beside the two studies' folders.

`python -m synthloom.selfimprove.experiment --out runs/self_improvement [--quick]`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthloom.selfimprove.loop import LoopConfig
from synthloom.selfimprove.train import TrainConfig

# Sized for a shared 2-core CPU: the whole run takes tens of minutes there.
FULL: dict[str, Any] = {"sizes": [0, 16, 32, 64, 128, 256], "heldout": 100, "problems": 24, "iterations": 2,
                        "samples": 4, "steps": 24, "improve_heldout": 50, "max_new_tokens": 40}
QUICK: dict[str, Any] = {"sizes": [0, 8, 16], "heldout": 12, "problems": 6, "iterations": 1, "samples": 2, "steps": 2,
                         "improve_heldout": 12, "max_new_tokens": 32}
TRAIN: dict[str, Any] = {"epochs": 2.0, "min_steps": 4, "batch_size": 8, "lr": 2e-3, "lora_r": 16, "lora_alpha": 32,
                         "top_layers": 12, "max_length": 128}


def run_experiment(out: Path, quick: bool = False, threads: int = 1, seed: int = 0,
                   log: Callable[[str], None] = print, parts: tuple[str, ...] = ("scale", "improve")) -> Path:
    from synthloom.selfimprove.runner import improve, scale_study

    plan = QUICK if quick else FULL
    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"plan": plan, "train": TRAIN, "seed": seed, "threads": threads,
                            "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    results: dict[str, Any] = {}
    started = time.perf_counter()
    if "scale" in parts:
        log("== scale study ==")
        results["scale"] = scale_study(out / "scale", plan["sizes"], n_heldout=plan["heldout"],
                                       train=TrainConfig(**TRAIN, seed=seed), threads=threads, seed=seed, log=log)
    if "improve" in parts:
        log("== ReST-EM / STaR ==")
        loop = LoopConfig(iterations=plan["iterations"], samples_per_problem=plan["samples"], cap_per_problem=2,
                          eval_k=plan["samples"], patience=plan["iterations"], max_new_tokens=plan["max_new_tokens"],
                          seed=seed)
        train = TrainConfig(**{**TRAIN, "epochs": 100.0, "min_steps": 1}, max_steps=plan["steps"], seed=seed)
        # the held-out set is the first `improve_heldout` problems of the scale study's held-out set
        reports = improve(out / "improve", n_train=plan["problems"], n_heldout=plan["improve_heldout"], loop=loop,
                          train=train, threads=threads, log=log)
        results["improve"] = [r.to_json() for r in reports]
    # parts may run separately (even in parallel processes): merge into what is on disk now
    previous = out / "report.json"
    report: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
    seconds = {**report.get("seconds", {}), ",".join(parts): round(time.perf_counter() - started)}
    report |= meta | results | {"seconds": seconds}
    previous.write_text(json.dumps(report, indent=1))
    path = out / "report.md"
    path.write_text(render_markdown(report))
    return path


def render_markdown(report: dict[str, Any]) -> str:
    lines = ["# Self-improvement experiment (SmolLM2-135M-Instruct, LoRA on CPU)", "",
             f"Run time (s) per part: {report['seconds']}; torch threads {report['threads']}, seed {report['seed']}.", ""]
    scale = report.get("scale")
    if scale:
        lines += ["## Held-out accuracy vs verified synthetic examples", "",
                  "| examples | steps | held-out pass@1 |", "|---:|---:|---:|"]
        lines += [f"| {p['n']} | {p['steps']} | {100 * p['pass@1']:.1f}% |" for p in scale["points"]]
        if scale.get("fit_text"):
            lines += ["", f"Power law on the error: {scale['fit_text']}"]
        lines += ["", "![scaling curve](scale/scaling.png)", ""]
    improve = report.get("improve")
    if improve:
        k = f"pass@{report['plan']['samples']}"
        lines += ["## ReST-EM / STaR iterations", "",
                  f"| iteration | kept (rationalised) | held-out pass@1 | sampled pass@1 | {k} | distinct-2 (train) |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for r in improve:
            c, h = r["collect"], r["heldout"]
            kept = f"{c['kept']} ({c['rationalised']})" if c else "-"
            div = c.get("train_diversity", {}).get("distinct_2", "-") if c else "-"
            lines.append(f"| {r['iteration']} | {kept} | {100 * h['pass@1']:.1f}% | "
                         f"{100 * h.get('sampled_pass@1', 0):.1f}% | {100 * h.get(k, 0):.1f}% | {div} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/self_improvement"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parts", default="scale,improve")
    args = parser.parse_args()
    print(run_experiment(args.out, args.quick, args.threads, parts=tuple(args.parts.split(","))))


if __name__ == "__main__":
    main()
