"""Self-improvement: loop control flow (fakes), pass@k, power-law fit, and a real tiny LoRA run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthloom.selfimprove.data import (
    HINT,
    Example,
    Problem,
    problem_sets,
    reference_examples,
    user_prompt,
)
from synthloom.selfimprove.evaluate import is_correct, pass_at_k
from synthloom.selfimprove.loop import LoopConfig, collect, run_loop
from synthloom.selfimprove.scaling import fit_power_law, plot_scaling


class FakePolicy:
    """Answers by rule: `solves` are answered correctly with many distinct texts, others wrongly;
    with a hint in the prompt, problems in `rationalises` get a correct rationale."""

    def __init__(self, name: str, solves: set[str], rationalises: dict[str, str] | None = None) -> None:
        self.name, self.solves, self.rationalises = name, solves, rationalises or {}
        self.prompts: list[str] = []

    def generate(self, prompts, n=1, temperature=0.0, max_new_tokens=48, seed=0):
        self.prompts += prompts
        out = []
        for prompt in prompts:
            question = prompt.split("\n")[0]
            hinted = "Hint:" in prompt
            if hinted and question in self.rationalises:
                out.append([self.rationalises[question]] * n)
            elif question in self.solves:
                answer = question.split("=")[0].split("+")
                total = int(answer[0]) + int(answer[1].strip(" ?"))
                out.append([f"Way {i}: the sum is {total}. The answer is {total}." for i in range(n)])
            else:
                out.append(["The answer is 999."] * n)
        return out


class FakeTrainer:
    def __init__(self, next_policies: list[FakePolicy]) -> None:
        self.calls: list[dict] = []
        self.next_policies = next_policies

    def train(self, examples, iteration, init, step_scale):
        self.calls.append({"examples": list(examples), "iteration": iteration, "init": init, "scale": step_scale})
        return self.next_policies[len(self.calls) - 1]


def problems() -> list[Problem]:
    return [Problem("p1", "1 + 1 = ?", "2"), Problem("p2", "2 + 3 = ?", "5"), Problem("p3", "4 + 4 = ?", "8")]


def test_collect_caps_per_problem_and_keeps_only_verified_distinct_solutions():
    policy = FakePolicy("base", solves={"1 + 1 = ?", "2 + 3 = ?"})
    got = collect(policy, problems(), LoopConfig(samples_per_problem=6, cap_per_problem=2, rationalize=False), 1)
    by_problem: dict[str, list[Example]] = {}
    for e in got.examples:
        by_problem.setdefault(e.problem_id, []).append(e)
    assert sorted(by_problem) == ["p1", "p2"]  # p3 never verified: nothing kept
    assert all(len(v) == 2 for v in by_problem.values())  # cap, though 6 correct samples were drawn
    assert all(len({e.completion for e in v}) == 2 for v in by_problem.values())  # distinct
    assert got.stats["correct_samples"] == 12 and got.stats["problems_solved"] == 2


def test_rationalisation_trains_without_the_hint_and_drops_hint_citing_rationales():
    rationales = {"4 + 4 = ?": "4 plus 4 is 8. The answer is 8.",
                  "2 + 3 = ?": "As the hint says, the answer is 5."}  # mentions the hint: unusable
    policy = FakePolicy("base", solves={"1 + 1 = ?"}, rationalises=rationales)
    got = collect(policy, problems(), LoopConfig(samples_per_problem=2, cap_per_problem=1), 1)
    rationalised = [e for e in got.examples if e.source == "rationalised"]
    assert [e.problem_id for e in rationalised] == ["p3"]
    assert rationalised[0].prompt == user_prompt("4 + 4 = ?")
    assert "Hint" not in rationalised[0].prompt and "8" not in rationalised[0].prompt
    # the hint was shown at generation time
    assert any(HINT.format(answer="8") in p for p in policy.prompts)


def test_loop_trains_from_base_each_iteration_and_samples_from_the_current_policy(tmp_path: Path):
    base = FakePolicy("base", solves={"1 + 1 = ?"})
    it1 = FakePolicy("it1", solves={"1 + 1 = ?", "2 + 3 = ?"})
    it2 = FakePolicy("it2", solves={"1 + 1 = ?", "2 + 3 = ?", "4 + 4 = ?"})
    trainer = FakeTrainer([it1, it2])
    config = LoopConfig(iterations=2, samples_per_problem=3, cap_per_problem=2, rationalize=False, eval_k=2,
                        patience=2)
    reports = run_loop(base, trainer, problems(), problems(), config, tmp_path)
    assert [c["init"] for c in trainer.calls] == [None, None]  # base model every iteration
    assert [c["scale"] for c in trainer.calls] == pytest.approx([1.0, 1.2])  # STaR step growth
    # iteration 2's data came from it1 (the current policy): p2 is now solved
    assert {e.problem_id for e in trainer.calls[1]["examples"]} == {"p1", "p2"}
    assert {e.problem_id for e in trainer.calls[0]["examples"]} == {"p1"}
    assert [r.heldout["pass@1"] for r in reports] == pytest.approx([1 / 3, 2 / 3, 1.0], abs=1e-3)
    assert reports[2].heldout["pass@2"] == 1.0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [r["iteration"] for r in saved] == [0, 1, 2]
    assert (tmp_path / "iter-1" / "train.jsonl").read_text().count("\n") == 2


def test_loop_stops_when_heldout_accuracy_stalls():
    base = FakePolicy("base", solves={"1 + 1 = ?"})
    trainer = FakeTrainer([FakePolicy("same", solves={"1 + 1 = ?"})] * 3)
    reports = run_loop(base, trainer, problems(), problems(), LoopConfig(iterations=3, eval_k=0, patience=1))
    assert len(trainer.calls) == 1 and len(reports) == 2


def test_previous_init_passes_the_current_policy():
    base = FakePolicy("base", solves={"1 + 1 = ?"})
    it1 = FakePolicy("it1", solves={"1 + 1 = ?", "2 + 3 = ?"})
    trainer = FakeTrainer([it1, it1])
    run_loop(base, trainer, problems(), problems(), LoopConfig(iterations=2, init_from="previous", eval_k=0,
                                                               patience=5))
    assert trainer.calls[0]["init"] is base and trainer.calls[1]["init"] is it1


def test_pass_at_k_matches_the_unbiased_estimator():
    assert pass_at_k(4, 0, 1) == 0.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_power_law_fit_recovers_known_exponent_and_plots(tmp_path: Path):
    sizes = [0, 50, 100, 200, 400, 800]
    accs = [0.1] + [1 - (0.9 * n ** -0.3 + 0.05) for n in sizes[1:]]
    fit = fit_power_law(sizes, accs)
    assert fit.b == pytest.approx(0.3, abs=0.02) and fit.c == pytest.approx(0.05, abs=0.02) and fit.r2 > 0.99
    two = fit_power_law([0, 10, 100], [0.0, 0.5, 0.75])  # two points: exact log-log line, floor 0
    assert two.c == 0.0 and two.error(10) == pytest.approx(0.5) and two.error(100) == pytest.approx(0.25)
    written = plot_scaling(sizes, accs, fit, tmp_path / "curve")
    assert [p.suffix for p in written] == [".svg", ".png"] and all(p.stat().st_size > 1000 for p in written)


def test_heldout_problems_never_appear_in_the_training_pool():
    train, heldout = problem_sets(200, 50, seed=3)  # disjointness in template: tests/test_heldout_disjoint.py
    assert len(train) == 200 and len(heldout) == 50
    assert not {p.question for p in train} & {p.question for p in heldout}
    ex = reference_examples(train[:1])[0]
    assert ex.completion.endswith(f"The answer is {train[0].answer}.") and "Hint" not in ex.prompt


def test_evaluation_reports_strict_and_fallback_accuracy_and_the_report_shows_diversity_and_people():
    from synthloom.selfimprove.evaluate import evaluate
    from synthloom.selfimprove.experiment import QUICK, people_arms, render_markdown

    policy = FakePolicy("p", solves={"1 + 1 = ?"})
    policy.generate = lambda prompts, **_: [["So it is 2"], ["The answer is 5."], ["The answer is 7."]]
    summary, rows = evaluate(policy, problems())
    assert summary["pass@1"] == 0.6667 and summary["pass@1_strict"] == 0.3333  # rounded to 4 places
    assert [r["correct_strict"] for r in rows] == [False, True, False]
    report = {"seconds": {}, "threads": 1, "seed": 0, "plan": QUICK,
              "scale": {"points": [{"n": 0, "steps": 0, "pass@1": 0.1}, {"n": 8, "steps": 4, "pass@1": 0.25}]},
              "diversity": {"scale n=8": {"problems": 8, "skeletons": 6, "per_family": {"rates": 2, "ratio": 4}},
                            "held-out": {"problems": 12, "skeletons": 9, "per_family": {"rates": 9}}},
              "people": {"base": {"n": 165, "pass@1": 0.03, "pass@1_strict": 0.01}}}
    text = render_markdown(report)
    assert "| 8 | 4 | 25.0% | 6 (rates 2, ratio 4) |" in text and "| 0 | 0 | 10.0% | - |" in text
    assert "its templates: 9 (rates 9)" in text and "| base | 165 | 3.0% | 1.0% |" in text
    assert "People-written" not in render_markdown({**report, "people": {}})
    arms = people_arms(Path("run"), ("scale",), QUICK)
    assert arms == [("base", None), ("scale n=8", Path("run/scale/n-8/adapter")),
                    ("scale n=16", Path("run/scale/n-16/adapter"))]


# ---------------------------------------------------------------- real model (SmolLM2-135M from the GGUF)

@pytest.fixture(scope="module")
def base_model():
    pytest.importorskip("peft")
    pytest.importorskip("gguf")
    from synthloom.selfimprove.model import load_base

    return load_base(threads=1)


@pytest.mark.slow
def test_tiny_lora_run_trains_saves_and_reloads_an_adapter(base_model, tmp_path: Path):
    import torch

    from synthloom.selfimprove.policy import HFPolicy
    from synthloom.selfimprove.train import (
        META_FILE,
        TrainConfig,
        load_adapter,
        train_lora,
        weights_fingerprint,
    )

    model, tokenizer = base_model
    before = weights_fingerprint(model)
    train, heldout = problem_sets(8, 2, seed=1)
    config = TrainConfig(max_steps=3, batch_size=4, lr=5e-3, max_length=96, lora_r=4, lora_alpha=8)
    result = train_lora(model, tokenizer, reference_examples(train), config, tmp_path / "adapter")
    assert result.steps == 3 and len(result.losses) == 3 and all(loss > 0 for loss in result.losses)
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    assert json.loads((tmp_path / "adapter" / META_FILE).read_text())["steps"] == 3
    assert weights_fingerprint(model) == before  # the base model is never modified

    unmerged = load_adapter(model, tokenizer, tmp_path / "adapter", merge=False)
    lora_b = [p for n, p in unmerged.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.abs().sum()) > 0 for p in lora_b)  # trained B is no longer zero
    policy = load_adapter(model, tokenizer, tmp_path / "adapter", batch_size=2)  # merged for fast decoding
    prompt = [user_prompt(heldout[0].question)]
    with torch.no_grad():  # reloaded adapter = saved adapter; and it changes the model's outputs
        enc = tokenizer(prompt, return_tensors="pt")
        merged_logits, base_logits = policy.model(**enc).logits, model(**enc).logits
        assert torch.allclose(merged_logits, unmerged.model(**enc).logits, atol=1e-3)
        assert not torch.allclose(merged_logits, base_logits, atol=1e-3)
    assert policy.generate(prompt, max_new_tokens=6)[0][0]
    assert HFPolicy(model, tokenizer).generate(prompt, max_new_tokens=6)[0][0]


@pytest.mark.slow
def test_improve_end_to_end_on_the_real_model(tmp_path: Path, base_model):
    from synthloom.selfimprove.runner import improve
    from synthloom.selfimprove.train import TrainConfig

    reports = improve(tmp_path, n_train=3, n_heldout=2,
                      loop=LoopConfig(iterations=1, samples_per_problem=2, max_new_tokens=12, eval_k=2),
                      train=TrainConfig(max_steps=1, batch_size=2, max_length=96, lora_r=2, lora_alpha=4),
                      log=lambda _m: None)
    assert reports[0].policy == "base"
    saved = json.loads((tmp_path / "report.json").read_text())
    assert "pass@1" in saved[0]["heldout"] and "pass@2" in saved[0]["heldout"]
    if len(reports) > 1:  # an iteration ran only if some sample or rationale verified
        assert (tmp_path / "iter-1" / "adapter" / "adapter_config.json").exists()
        assert reports[1].init == "base"


def test_commands_register_and_validate_sizes():
    import typer
    from typer.testing import CliRunner

    from synthloom.selfimprove.commands import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    assert all(c in runner.invoke(app, ["--help"]).output for c in ("train", "improve", "scale-study"))
    bad = runner.invoke(app, ["scale-study", "--sizes", "10,x"])
    assert bad.exit_code != 0 and "comma-separated integers" in bad.output


def test_training_examples_from_jsonl_accept_three_shapes(tmp_path: Path):
    from synthloom.errors import BadInputError
    from synthloom.selfimprove.train import read_jsonl_examples

    path = tmp_path / "d.jsonl"
    rows = [{"prompt": "P", "completion": "C"}, {"instruction": "I", "output": "O"},
            {"question": "What is 1 + 1?", "solution": "1 + 1 = 2.\nThe answer is 2."}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    got = read_jsonl_examples(path)
    assert [(e.prompt, e.completion) for e in got[:2]] == [("P", "C"), ("I", "O")]
    assert got[2].prompt == user_prompt("What is 1 + 1?")  # plain questions get the evaluation prompt
    path.write_text(json.dumps({"prompt": "only a prompt"}))
    with pytest.raises(BadInputError, match="row 0"):
        read_jsonl_examples(path)


def test_training_samples_need_an_explicit_answer_evaluation_may_fall_back():
    class Rambler(FakePolicy):
        def generate(self, prompts, n=1, temperature=0.0, max_new_tokens=48, seed=0):
            return [["Two candles cost 2 and something else is 2", "1 + 1 = 2. The answer is 2."]
                    for _ in prompts]

    for strict in (False, True):  # the old opt-out no longer lets rambling into training data
        got = collect(Rambler("r", set()), problems()[:1], LoopConfig(samples_per_problem=2, cap_per_problem=5,
                                                                      rationalize=False, strict_answers=strict), 1)
        assert [e.completion for e in got.examples] == ["1 + 1 = 2. The answer is 2."]
    assert is_correct("Two candles cost 2 and something else is 2", "2")  # evaluation opts in to the fallback
    assert not is_correct("Two candles cost 2 and something else is 2", "2", strict=True)


def test_fresh_problems_give_each_iteration_unseen_problems():
    more = problems() + [Problem("p4", "5 + 5 = ?", "10"), Problem("p5", "6 + 1 = ?", "7"),
                         Problem("p6", "2 + 2 = ?", "4")]
    everything = {p.question for p in more}
    base = FakePolicy("base", solves=everything)
    trainer = FakeTrainer([FakePolicy("it1", solves=everything), FakePolicy("it2", solves=everything)])
    run_loop(base, trainer, more, more[:1], LoopConfig(iterations=2, cap_per_problem=1, eval_k=0, patience=5,
                                                       fresh_problems=True))
    seen = [{e.problem_id for e in call["examples"]} for call in trainer.calls]
    assert seen == [{"p1", "p2", "p3"}, {"p4", "p5", "p6"}]
