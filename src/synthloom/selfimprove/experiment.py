"""The self-improvement experiment of docs/experiments/self_improvement.md, as one function/command.

1. Baseline: greedy held-out accuracy of SmolLM2-135M-Instruct (the scale study's n = 0 point).
2. Scaling curve: LoRA fine-tunes on n verified synthetic solutions from the symbolic generator,
   held-out accuracy vs n, power-law fit and plot.
3. ReST-EM / STaR: the model's own verified solutions (plus hinted rationalisations), fine-tuned from
   the base each iteration; pass@1, pass@k and diversity per iteration.
Every run reports the template diversity (distinct masked skeletons) of each training set next to
its accuracy. With `--people-heldout`, every arm (base, each scale point, each ReST-EM iteration) is
also evaluated on the people-written held-out set (`data.people_heldout()`), which is never used
for training or for tuning prompts. Writes report.md (tables + plot) and report.json beside the two
studies' folders.

`python -m synthloom.selfimprove.experiment --out runs/self_improvement [--quick] [--people-heldout]`
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

from synthloom.selfimprove.data import people_heldout, problem_sets, template_diversity
from synthloom.selfimprove.evaluate import evaluate
from synthloom.selfimprove.loop import LoopConfig
from synthloom.selfimprove.train import TrainConfig

# Sized for a shared 2-core CPU: the whole run takes tens of minutes there.
FULL: dict[str, Any] = {"sizes": [0, 16, 32, 64, 128, 256], "heldout": 100, "problems": 24, "iterations": 2,
                        "samples": 4, "steps": 24, "improve_heldout": 50, "max_new_tokens": 40}
QUICK: dict[str, Any] = {"sizes": [0, 8, 16], "heldout": 12, "problems": 6, "iterations": 1, "samples": 2, "steps": 2,
                         "improve_heldout": 12, "max_new_tokens": 32}
PEOPLE_MAX_NEW_TOKENS = 64  # two-step problems need a little more room than the generator's one-step ones
TRAIN: dict[str, Any] = {"epochs": 2.0, "min_steps": 4, "batch_size": 8, "lr": 2e-3, "lora_r": 16, "lora_alpha": 32,
                         "top_layers": 12, "max_length": 128}


def run_experiment(out: Path, quick: bool = False, threads: int = 1, seed: int = 0,
                   log: Callable[[str], None] = print, parts: tuple[str, ...] = ("scale", "improve"),
                   people: bool = False) -> Path:
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
    results["diversity"] = diversity_report(plan, seed, parts)
    if people:
        log("== people-written held-out set ==")
        results["people"] = evaluate_people(out, people_arms(out, parts, plan), threads, log)
    # parts may run separately (even in parallel processes): merge into what is on disk now
    previous = out / "report.json"
    report: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
    seconds = {**report.get("seconds", {}), ",".join(parts): round(time.perf_counter() - started)}
    for key in ("diversity", "people"):  # keyed by arm: a later part adds to an earlier one
        if key in results and key in report:
            results[key] = {**report[key], **results[key]}
    report |= meta | results | {"seconds": seconds}
    previous.write_text(json.dumps(report, indent=1))
    path = out / "report.md"
    path.write_text(render_markdown(report))
    return path


def diversity_report(plan: dict[str, Any], seed: int, parts: tuple[str, ...]) -> dict[str, Any]:
    """Distinct masked skeletons of every training set the run uses, and of its held-out set."""
    report: dict[str, Any] = {}
    if "scale" in parts:
        pool, heldout = problem_sets(max(plan["sizes"]), plan["heldout"], seed=seed)
        report |= {f"scale n={n}": template_diversity(pool[:n]) for n in plan["sizes"] if n > 0}
        report["held-out"] = template_diversity(heldout)
    if "improve" in parts:
        pool, _ = problem_sets(plan["problems"], plan["improve_heldout"], seed=seed)
        report["ReST-EM problems"] = template_diversity(pool)
    return report


def people_arms(out: Path, parts: tuple[str, ...], plan: dict[str, Any]) -> list[tuple[str, Path | None]]:
    """(arm, adapter folder or None for the base model) for every arm this run trained."""
    arms: list[tuple[str, Path | None]] = [("base", None)]
    if "scale" in parts:
        arms += [(f"scale n={n}", out / "scale" / f"n-{n}" / "adapter") for n in plan["sizes"] if n > 0]
    if "improve" in parts:
        arms += [(f"ReST-EM iteration {i}", out / "improve" / f"iter-{i}" / "adapter")
                 for i in range(1, plan["iterations"] + 1)]
    return arms


def evaluate_people(out: Path, arms: list[tuple[str, Path | None]], threads: int = 1,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Greedy accuracy of each arm on the people-written set, with the last-number fallback and strict."""
    from synthloom.selfimprove.model import load_base
    from synthloom.selfimprove.policy import HFPolicy
    from synthloom.selfimprove.train import load_adapter

    model, tokenizer = load_base(threads=threads)
    problems, folder, results = people_heldout(), out / "people", {}
    folder.mkdir(parents=True, exist_ok=True)
    for name, adapter in arms:
        if adapter is not None and not (adapter / "adapter_config.json").exists():
            log(f"{name}: no adapter at {adapter} (the loop stopped early?), skipped")
            continue
        policy = HFPolicy(model, tokenizer) if adapter is None else load_adapter(model, tokenizer, adapter)
        summary, rows = evaluate(policy, problems, k=0, max_new_tokens=PEOPLE_MAX_NEW_TOKENS)
        slug = name.replace(" ", "-").replace("=", "")
        (folder / f"{slug}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        results[name] = {"n": summary["n"], "pass@1": summary["pass@1"], "pass@1_strict": summary["pass@1_strict"]}
        log(f"{name}: people-written pass@1 {summary['pass@1']:.3f} (strict {summary['pass@1_strict']:.3f})")
    return results


def _skeletons(div: dict[str, Any] | None) -> str:
    if not div:
        return "-"
    fams = ", ".join(f"{f} {k}" for f, k in div["per_family"].items())
    return f"{div['skeletons']} ({fams})"


def render_markdown(report: dict[str, Any]) -> str:
    lines = ["# Self-improvement experiment (SmolLM2-135M-Instruct, LoRA on CPU)", "",
             f"Run time (s) per part: {report['seconds']}; torch threads {report['threads']}, seed {report['seed']}.", ""]
    scale = report.get("scale")
    if scale:
        div = report.get("diversity", {})
        lines += ["## Held-out accuracy vs verified synthetic examples", "",
                  "Held-out: disjoint from training in template and signature; "
                  f"its templates: {_skeletons(div.get('held-out'))}.", "",
                  "| examples | steps | held-out pass@1 | distinct skeletons (per family) |", "|---:|---:|---:|---|"]
        lines += [f"| {p['n']} | {p['steps']} | {100 * p['pass@1']:.1f}% | {_skeletons(div.get('scale n=' + str(p['n'])))} |"
                  for p in scale["points"]]
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
    people = report.get("people")
    if people:
        lines += ["## People-written held-out set (never used for training or prompt tuning)", "",
                  f"greedy, max_new_tokens {PEOPLE_MAX_NEW_TOKENS}", "",
                  "| arm | problems | pass@1 (last-number fallback) | pass@1 strict (\"The answer is N\") |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {arm} | {r['n']} | {100 * r['pass@1']:.1f}% | {100 * r['pass@1_strict']:.1f}% |"
                  for arm, r in people.items()]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/self_improvement"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parts", default="scale,improve")
    parser.add_argument("--people-heldout", action="store_true",
                        help="also evaluate every arm on the people-written held-out set")
    args = parser.parse_args()
    print(run_experiment(args.out, args.quick, args.threads, parts=tuple(args.parts.split(",")),
                         people=args.people_heldout))


if __name__ == "__main__":
    main()
