"""Glue between the loop / scale study and the real model: an HF LoRA trainer and the experiments.

`improve(...)` runs ReST-EM/STaR, `scale_study(...)` the data-size sweep, `experiment(...)` both
plus a markdown report — the one command behind docs/experiments/self_improvement.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthloom.selfimprove.data import Example, problem_sets, reference_examples
from synthloom.selfimprove.evaluate import evaluate
from synthloom.selfimprove.loop import IterationReport, LoopConfig, run_loop
from synthloom.selfimprove.policy import HFPolicy, Policy
from synthloom.selfimprove.train import TrainConfig, load_adapter, train_lora

Log = Callable[[str], None]


class HFLoraTrainer:
    """Trains a LoRA adapter per iteration from the base weights (never from the previous adapter)."""

    def __init__(self, base_model: Any, tokenizer: Any, config: TrainConfig, out_dir: Path,
                 batch_size: int = 16, log: Log | None = None) -> None:
        self.base_model, self.tokenizer, self.config = base_model, tokenizer, config
        self.out_dir, self.batch_size, self.log = out_dir, batch_size, log
        self.results: list[dict[str, Any]] = []

    def train(self, examples: list[Example], iteration: int, init: Any, step_scale: float) -> Policy:
        if init is not None:
            raise NotImplementedError("continuing from the previous adapter (ReST) is not supported; use init_from=base")
        config = self.config
        if config.max_steps and step_scale != 1.0:
            config = config.model_copy(update={"max_steps": round(config.max_steps * step_scale)})
        adapter = self.out_dir / f"iter-{iteration}" / "adapter"
        result = train_lora(self.base_model, self.tokenizer, examples, config, adapter, log=self.log)
        self.results.append(result.to_json())
        return load_adapter(self.base_model, self.tokenizer, adapter, batch_size=self.batch_size)


def improve(out_dir: Path, n_train: int = 64, n_heldout: int = 100, loop: LoopConfig | None = None,
            train: TrainConfig | None = None, max_depth: int = 1, threads: int = 1, batch_size: int = 16,
            gguf_path: str | None = None, log: Log = print) -> list[IterationReport]:
    """ReST-EM/STaR on symbolic word problems; writes iter-*/ and report.json under out_dir."""
    from synthloom.selfimprove.model import load_base

    model, tokenizer = load_base(gguf_path, threads=threads)
    if loop and loop.fresh_problems:
        n_train *= loop.iterations  # n_train new problems for every iteration
    train_pool, heldout = problem_sets(n_train, n_heldout, seed=(loop.seed if loop else 0), max_depth=max_depth)
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = HFLoraTrainer(model, tokenizer, train or TrainConfig(), out_dir, batch_size, log)
    reports = run_loop(HFPolicy(model, tokenizer, batch_size), trainer, train_pool, heldout,
                       loop or LoopConfig(), out_dir, log)
    (out_dir / "training.json").write_text(json.dumps(trainer.results, indent=1))
    return reports


def scale_study(out_dir: Path, sizes: list[int], n_heldout: int = 100, train: TrainConfig | None = None,
                max_depth: int = 1, threads: int = 1, batch_size: int = 16, max_new_tokens: int = 48,
                seed: int = 0, gguf_path: str | None = None, log: Log = print) -> dict[str, Any]:
    """Held-out accuracy after fine-tuning on the first n verified generator solutions, n in `sizes`."""
    from synthloom.selfimprove.model import load_base
    from synthloom.selfimprove.scaling import run_scale_study

    model, tokenizer = load_base(gguf_path, threads=threads)
    pool, heldout = problem_sets(max(sizes), n_heldout, seed=seed, max_depth=max_depth)
    examples = reference_examples(pool)
    config = train or TrainConfig()

    def measure(n: int) -> dict[str, Any]:
        started = time.perf_counter()
        if n == 0:
            policy: Policy = HFPolicy(model, tokenizer, batch_size)
            steps = 0
        else:
            adapter = out_dir / f"n-{n}" / "adapter"
            result = train_lora(model, tokenizer, examples[:n], config, adapter, log=log)
            policy, steps = load_adapter(model, tokenizer, adapter, batch_size), result.steps
        summary, rows = evaluate(policy, heldout, k=0, max_new_tokens=max_new_tokens)
        (out_dir / f"n-{n}").mkdir(parents=True, exist_ok=True)
        (out_dir / f"n-{n}" / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return {"pass@1": summary["pass@1"], "steps": steps, "seconds": round(time.perf_counter() - started, 1)}

    return run_scale_study(sizes, measure, out_dir, log)
