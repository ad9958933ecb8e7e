"""`synthloom train`, `synthloom improve`, `synthloom scale-study`, `synthloom self-improvement`.

Mounted by the main CLI through `register(app)`. Heavy imports (torch, transformers, peft) happen
inside the commands, so `synthloom --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("improve")(improve_command)
    app.command("scale-study")(scale_study_command)
    app.command("self-improvement")(experiment_command)


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise typer.BadParameter(f"--sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or sizes[0] < 0:
        raise typer.BadParameter("--sizes needs non-negative integers")
    return sizes


def train_command(
    data: Path = typer.Argument(..., help="JSONL of prompt/completion (or instruction/output, question/solution)"),
    out: Path = typer.Option("runs/adapter", "--out", help="adapter folder to write"),
    epochs: float = typer.Option(2.0, help="passes over the data"),
    max_steps: int = typer.Option(0, help="cap on optimizer steps (0 = none)"),
    batch_size: int = typer.Option(8),
    lr: float = typer.Option(2e-3),
    lora_r: int = typer.Option(16),
    top_layers: int = typer.Option(12, help="adapt only the last N decoder layers (0 = all; all is ~3x slower)"),
    eval_problems: int = typer.Option(0, help="evaluate on this many held-out symbolic problems after training"),
    threads: int = typer.Option(1, help="torch CPU threads (1 is fastest on a shared machine)"),
    gguf: str = typer.Option("", help="GGUF weights (default: the bundled SmolLM2-135M-Instruct)"),
) -> None:
    """LoRA fine-tuning on CPU of the embedded model; saves a PEFT adapter."""
    from synthloom.selfimprove.evaluate import evaluate
    from synthloom.selfimprove.model import load_base
    from synthloom.selfimprove.train import (
        TrainConfig,
        load_adapter,
        read_jsonl_examples,
        train_lora,
    )

    examples = read_jsonl_examples(data)
    config = TrainConfig(epochs=epochs, max_steps=max_steps or None, batch_size=batch_size, lr=lr, lora_r=lora_r,
                         lora_alpha=2 * lora_r, top_layers=top_layers or None)
    model, tokenizer = load_base(gguf or None, threads=threads)
    result = train_lora(model, tokenizer, examples, config, out, log=console.print)
    console.print(f"adapter saved to {result.adapter_dir} ({result.steps} steps, {result.seconds:.0f} s, "
                  f"final loss {result.losses[-1]:.3f})")
    if eval_problems:
        from synthloom.selfimprove.data import problem_sets

        _, heldout = problem_sets(0, eval_problems)
        summary, _ = evaluate(load_adapter(model, tokenizer, out), heldout)
        console.print(f"held-out pass@1: {summary['pass@1']:.3f} on {summary['n']} problems")


def improve_command(
    out: Path = typer.Option("runs/improve", "--out"),
    iterations: int = typer.Option(2),
    problems: int = typer.Option(64, help="training problems per iteration"),
    heldout: int = typer.Option(100, help="held-out problems"),
    samples: int = typer.Option(4, "-k", "--samples", help="solutions sampled per problem"),
    cap: int = typer.Option(2, help="most correct solutions kept per problem"),
    rationalize: bool = typer.Option(True, help="STaR: retry failures with the answer as a hint"),
    strict_answers: bool = typer.Option(False, help="train only on samples that state 'The answer is N'"),
    fresh_problems: bool = typer.Option(False, help="new training problems every iteration (never resample seen ones)"),
    max_steps: int = typer.Option(24, help="training steps of iteration 1 (grows 20%/iteration)"),
    top_layers: int = typer.Option(12, help="adapt only the last N decoder layers (0 = all)"),
    max_depth: int = typer.Option(1, help="problem difficulty (1 = one-step, small integers)"),
    threads: int = typer.Option(1),
    seed: int = typer.Option(0),
) -> None:
    """ReST-EM / STaR self-improvement on verifiable math; pass@1, pass@k and diversity per iteration."""
    from synthloom.selfimprove.loop import LoopConfig
    from synthloom.selfimprove.runner import improve
    from synthloom.selfimprove.train import TrainConfig

    loop = LoopConfig(iterations=iterations, samples_per_problem=samples, cap_per_problem=cap,
                      rationalize=rationalize, strict_answers=strict_answers,
                      fresh_problems=fresh_problems, seed=seed)
    reports = improve(out, n_train=problems, n_heldout=heldout, loop=loop,
                      train=TrainConfig(epochs=100, max_steps=max_steps, lr=2e-3, top_layers=top_layers or None,
                                                   seed=seed), max_depth=max_depth,
                      threads=threads, log=console.print)
    for r in reports:
        k = f"pass@{loop.eval_k}"
        console.print(f"iteration {r.iteration}: pass@1 {r.heldout['pass@1']:.3f}  {k} {r.heldout.get(k, 0):.3f}  "
                      f"kept {r.collect.get('kept', '-')}")
    console.print(f"report: {out / 'report.json'}")


def scale_study_command(
    out: Path = typer.Option("runs/scale-study", "--out"),
    sizes: str = typer.Option("0,32,64,128,256", help="training-set sizes (comma-separated)"),
    heldout: int = typer.Option(100),
    epochs: float = typer.Option(2.0),
    top_layers: int = typer.Option(12, help="adapt only the last N decoder layers (0 = all)"),
    max_depth: int = typer.Option(1),
    threads: int = typer.Option(1),
) -> None:
    """Held-out accuracy vs number of verified synthetic examples; power-law fit and plot."""
    from synthloom.selfimprove.runner import scale_study
    from synthloom.selfimprove.train import TrainConfig

    report = scale_study(out, _sizes(sizes), n_heldout=heldout, train=TrainConfig(epochs=epochs, lr=2e-3, min_steps=4,
                                                                       top_layers=top_layers or None),
                         max_depth=max_depth, threads=threads, log=console.print)
    console.print(json.dumps(report["points"]))
    console.print(f"fit: {report['fit_text']}; plot: {out / 'scaling.svg'}")


def experiment_command(
    out: Path = typer.Option("runs/self_improvement", "--out"),
    quick: bool = typer.Option(False, help="a smaller run (minutes) for smoke testing"),
    threads: int = typer.Option(1),
) -> None:
    """The documented experiment: baseline, ReST-EM/STaR iterations and the scaling curve, with report.md."""
    from synthloom.selfimprove.experiment import run_experiment

    report = run_experiment(out, quick=quick, threads=threads, log=console.print)
    console.print(f"report: {report}")
