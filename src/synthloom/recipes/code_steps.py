"""Pipeline steps shared by the code recipes (self_instruct, evol_instruct, code_exec).

- `self_instruct_generate` (global): the iterative Self-Instruct / Code Alpaca loop with the
  online ROUGE-L novelty pool (seeded with the seed instructions).
- `classify_task` (map): reads the model's "Is it classification?" answer.
- `self_instruct_instances` (expand): output-first (classification) or input-first instances.
- `evolve_instructions` (global): M rounds of Evol-Instruct / Code Evol-Instruct with elimination.
- `code_problem` (map): normalise a problem row (instruction, input, entry_point).
- `execute_code` (filter): run sampled solutions x extracted asserts in the sandbox and keep the
  CodeT dual-agreement (or first passing) solution, re-verified on its own tests.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr

from synthloom.codegen import evolution as evo
from synthloom.codegen.execution import (
    dual_agreement,
    extract_asserts,
    extract_solution,
    first_function_name,
    first_passing,
    passed_tests,
)
from synthloom.codegen.instances import (
    filter_instances,
    looks_like_classification,
    parse_input_first,
    parse_output_first,
    parse_yes_no,
)
from synthloom.codegen.instructions import (
    InstructionFilters,
    alpaca_examples,
    parse_alpaca_blocks,
    self_instruct_examples,
    split_numbered,
)
from synthloom.errors import ConfigError
from synthloom.llm.base import InvalidRequestError
from synthloom.pipeline import calls
from synthloom.pipeline.calls import CallLog, user_request
from synthloom.pipeline.step import Rejected, Step, StepContext, register_step
from synthloom.pipeline.templates import PromptTemplate
from synthloom.quality.rouge import NoveltyPool
from synthloom.records import (
    META,
    Row,
    add_verdict,
    canonical_json,
    meta_of,
    sha256_hex,
)

# -- calling a model from inside a step -------------------------------------------------------------


@dataclass
class Answer:
    """One completion plus the provenance a derived row should carry."""

    text: str
    finish_reason: str
    meta: dict[str, Any] = field(default_factory=dict)
    error: str = ""  # set when the backend refused the request (e.g. prompt longer than the context)


async def ask(ctx: StepContext, role: str, prompt: str, *, seed: int, temperature: float, top_p: float,
              max_tokens: int, stop: list[str] | None = None, prompt_sha: str = "") -> Answer:
    """One chat request through the run's cached model; usage is counted for the funnel."""
    log = CallLog()
    request = user_request(prompt, seed, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                           stop=list(stop or []))
    try:
        response = await calls.ask(ctx, role, request, log, role)
    except InvalidRequestError as e:
        return Answer("", "error", error=str(e))
    params = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
    meta = log.meta(prompt_sha or sha256_hex(prompt)[:16], params)
    meta.pop("raw")  # code rows keep their text in columns; no second copy in _meta
    return Answer(response.text, response.choices[0].finish_reason if response.choices else "stop", meta)


def meta_only(row: Row) -> Row:
    """A row reduced to its provenance, so a derived row starts with no inherited columns."""
    return {META: row.get(META, {})}


def anchor_row(name: str, rows: list[Row]) -> Row:
    """A stand-in parent whose id hashes the input ids: seeds of pool-level requests follow the inputs."""
    ids = [meta_of(r).get("id", "") for r in rows]
    base = meta_of(rows[0]) if rows else {}
    return {META: {**base, "id": sha256_hex(canonical_json([name, ids]))[:16], "parents": []}}


# -- Self-Instruct / Code Alpaca generation loop -------------------------------------------------------


@register_step("self_instruct_generate")
class SelfInstructGenerate(Step):
    """Generate new instructions in rounds until `target` pass the filters and the novelty pool.

    Each round sends `prompts_per_round` prompts concurrently; the completions are then filtered
    and checked against the ROUGE-L pool in prompt order, and accepted instructions join the pool
    (and the machine examples of later prompts) immediately.
    """

    is_global: ClassVar[bool] = True
    variant: Literal["self_instruct", "code_alpaca"] = "self_instruct"
    target: int = 20
    prompts_per_round: int = 5
    max_rounds: int = 10
    num_prompt_instructions: int = 8  # Self-Instruct: 8 in context ...
    num_machine_instructions: int = 2  # ... of which 2 machine-generated
    num_seed_examples: int = 3  # Code Alpaca: 3 seed tasks per prompt ...
    tasks_per_prompt: int = 20  # ... asking for 20 tasks
    rouge_threshold: float = 0.7
    min_words: int = 4
    max_words: int = 150
    temperature: float = 0.7
    top_p: float = 0.5
    max_tokens: int = 512
    model: str = "generator"

    _template: PromptTemplate | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        if self.target < 1 or self.prompts_per_round < 1 or self.max_rounds < 1:
            raise ConfigError(f"step {self.name!r}: target, prompts_per_round and max_rounds must be >= 1")
        self._template = PromptTemplate("code_alpaca_generate.j2" if self.alpaca else "self_instruct_generate.j2")

    @property
    def alpaca(self) -> bool:
        return self.variant == "code_alpaca"

    def input_columns(self) -> set[str]:
        return {"instruction"} | ({"output"} if self.alpaca else set())

    def output_columns(self, available: set[str]) -> set[str]:
        cols = {"instruction", "round", "rouge_max", "rouge_most_similar"}
        return cols | ({"input", "output"} if self.alpaca else set())

    def model_roles(self) -> set[str]:
        return {self.model}

    def stop_sequences(self) -> list[str]:
        if self.alpaca:
            n = self.tasks_per_prompt
            return [f"\n{n}", f"{n}."]
        n = self.num_prompt_instructions + 8  # Self-Instruct stops at item 16 of an 8-example prompt
        return ["\n\n", f"\n{n}", f"{n}.", f"{n} ."]

    def _prompt(self, seeds: list[Row], machine: list[Row], rng: random.Random) -> tuple[str, list[Row]]:
        assert self._template is not None
        if self.alpaca:
            examples = alpaca_examples(seeds, rng, self.num_seed_examples)
            text = self._template.render({"examples": [{"instruction": e["instruction"], "input": e.get("input", ""),
                                                        "output": e.get("output", "")} for e in examples],
                                          "num_tasks": self.tasks_per_prompt, "next_index": len(examples) + 1})
            return text, examples
        by_text = {r["instruction"]: r for r in machine} | {r["instruction"]: r for r in seeds}
        picked = self_instruct_examples([r["instruction"] for r in seeds], [r["instruction"] for r in machine], rng,
                                        self.num_prompt_instructions, self.num_machine_instructions)
        text = self._template.render({"examples": picked, "next_index": len(picked) + 1})
        return text, [by_text[p] for p in picked]

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        assert self._template is not None
        seeds = [r for r in rows if str(r.get("instruction") or "").strip()]
        if not seeds:
            raise ConfigError(f"step {self.name!r}: no seed instructions (rows need an 'instruction')")
        filters = InstructionFilters(self.min_words, self.max_words, code_alpaca=self.alpaca)
        pool = NoveltyPool(self.rouge_threshold, initial=[r["instruction"] for r in seeds])
        anchor = anchor_row(self.name, seeds)
        machine: list[Row] = []
        out: list[Any] = []
        for rnd in range(self.max_rounds):
            if len(machine) >= self.target:
                break
            plans = []
            for j in range(self.prompts_per_round):
                seed = ctx.seed_for(anchor, rnd * self.prompts_per_round + j)
                plans.append((seed, *self._prompt(seeds, machine, random.Random(seed))))
            answers = await asyncio.gather(*(
                ask(ctx, self.model, text, seed=seed, temperature=self.temperature, top_p=self.top_p,
                    max_tokens=self.max_tokens, stop=self.stop_sequences(), prompt_sha=self._template.sha)
                for seed, text, _ in plans))
            for (seed, _, examples), answer in zip(plans, answers):  # prompt order: deterministic pool
                out.extend(self._accept(answer, examples, rnd, filters, pool, machine, anchor, ctx))
        return out

    def _accept(self, answer: Answer, examples: list[Row], rnd: int, filters: InstructionFilters,
                pool: NoveltyPool, machine: list[Row], anchor: Row, ctx: StepContext) -> list[Any]:
        parents = [meta_of(e).get("id", "") for e in examples]

        def new_row(cols: Row, first: bool) -> Row:
            meta = dict(answer.meta)
            if not first:
                meta.pop("usage", None)  # the completion's tokens are counted once, on its first row
            row = ctx.derive(anchor, {**cols, "round": rnd}, raw={self.name: answer.text}, **meta)
            row[META]["parents"] = parents
            return row

        if answer.error:
            return [Rejected("invalid_request", new_row({"instruction": ""}, True), answer.error)]
        truncated = answer.finish_reason == "length"
        if truncated and not self.alpaca:
            # Self-Instruct discards a completion cut off by max_tokens: its last item is unreliable.
            return [Rejected("truncated", new_row({"instruction": answer.text[:200]}, True),
                             f"hit max_tokens={self.max_tokens}")]
        next_index = (len(examples) + 1)
        if self.alpaca:
            tasks = parse_alpaca_blocks(answer.text, next_index)
            if truncated and tasks:
                tasks = tasks[:-1]  # Code Alpaca drops only the block cut off by max_tokens
            items: list[Row | str] = [t if isinstance(t, str) else dict(t) for t in tasks]
        else:
            items = [{"instruction": t} for t in split_numbered(answer.text, next_index)]
        if not items:
            return [Rejected("no_instructions", new_row({"instruction": answer.text[:200]}, True),
                             "completion has no parsable instruction")]
        out: list[Any] = []
        for k, item in enumerate(items):
            if isinstance(item, str):  # a malformed Code Alpaca block
                out.append(Rejected(item, new_row({"instruction": ""}, k == 0), "block lacks Instruction/Input/Output"))
                continue
            cols = {"instruction": item["instruction"], "rouge_max": 0.0, "rouge_most_similar": None}
            if self.alpaca:
                cols |= {"input": item["input"], "output": item["output"]}
            reason = filters.reason(item["instruction"]) if item["instruction"] else "empty_instruction"
            if not reason and self.alpaca and not item["output"]:
                reason = "empty_output"
            if reason:
                out.append(Rejected(reason, new_row(cols, k == 0), item["instruction"][:120]))
                continue
            if len(machine) >= self.target:
                out.append(Rejected("over_target", new_row(cols, k == 0), f"target {self.target} reached"))
                continue
            novelty = pool.add_if_novel(item["instruction"])
            cols |= {"rouge_max": round(novelty.max_score, 4), "rouge_most_similar": novelty.most_similar}
            row = new_row(cols, k == 0)
            if not novelty.accepted:
                out.append(Rejected("not_novel", row, f"ROUGE-L {novelty.max_score:.3f} > {self.rouge_threshold}"))
                continue
            machine.append(row)
            out.append(row)
        return out


# -- classification and instances ---------------------------------------------------------------------


@register_step("classify_task")
class ClassifyTask(Step):
    """Turn the model's "Is it classification?" answer into `is_classification`.

    An answer that is neither Yes nor No is repaired with a keyword rule, and the source of the
    decision is recorded in `classification_source` ("model" or "keywords").
    """

    column: str = "classification_answer"

    def input_columns(self) -> set[str]:
        return {"instruction", self.column}

    def output_columns(self, available: set[str]) -> set[str]:
        return (available - {self.column}) | {"is_classification", "classification_source"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out = []
        for row in rows:
            answer = parse_yes_no(str(row.get(self.column) or ""))
            source = "model"
            if answer is None:
                answer, source = looks_like_classification(str(row["instruction"])), "keywords"
            new = ctx.derive(row, {"is_classification": answer, "classification_source": source})
            new.pop(self.column, None)
            out.append(new)
        return out


@register_step("self_instruct_instances")
class SelfInstructInstances(Step):
    """Generate up to `max_instances` (input, output) instances per task: output-first for classification."""

    max_instances: int = 5
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 350
    model: str = "generator"

    _template: PromptTemplate | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        self._template = PromptTemplate("self_instruct_instances.j2")

    def input_columns(self) -> set[str]:
        return {"instruction", "is_classification"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"input", "output", "instance_index"}

    def model_roles(self) -> set[str]:
        return {self.model}

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        return list(await asyncio.gather(*(self._one(row, ctx) for row in rows)))

    async def _one(self, row: Row, ctx: StepContext) -> Any:
        assert self._template is not None
        cls = bool(row["is_classification"])
        seed = ctx.seed_for(row)
        answer = await ask(ctx, self.model, self._template.render(row), seed=seed, temperature=self.temperature,
                           top_p=self.top_p, max_tokens=self.max_tokens, stop=["Example 6", "Task:"],
                           prompt_sha=self._template.sha)
        if answer.error:
            return Rejected("invalid_request", row, answer.error)
        parsed = parse_output_first("Class label:" + answer.text) if cls else parse_input_first(answer.text)
        kept, dropped = filter_instances(parsed, random.Random(seed), self.max_instances,
                                         truncated=answer.finish_reason == "length")
        if not kept:
            detail = ", ".join(f"{k}={v}" for k, v in sorted(dropped.items())) or "no instance parsed"
            return Rejected("no_valid_instances", row, f"{detail}; output: {answer.text[:160]!r}")
        generation = "output_first" if cls else "input_first"
        return [ctx.derive(row, {"input": inst.input, "output": inst.output, "instance_index": i},
                           raw={self.name: answer.text}, params={**answer.meta.get("params", {}),
                                                                 "generation": generation},
                           **{k: v for k, v in answer.meta.items() if k != "params"})
                for i, inst in enumerate(kept)]


# -- Evol-Instruct -----------------------------------------------------------------------------------


@register_step("evolve_instructions")
class EvolveInstructions(Step):
    """M rounds of evolution; each surviving evolution replaces its original in the pool.

    Per instruction and round: pick an operation uniformly, rewrite (I'), answer it (R'), then
    eliminate on any of the four rules; a failed evolution is rejected with its rule as the
    reason and the *original* instruction stays in the pool for the next round.
    """

    is_global: ClassVar[bool] = True
    mode: evo.Mode = "code"
    rounds: int = 4
    operations: list[str] = Field(default_factory=list)
    temperature: float = 1.0
    top_p: float = 0.95
    evolve_max_tokens: int = 192
    response_max_tokens: int = 384
    judge: bool = True  # rule 1: ask the model whether I and I' are "Equal"
    unreadable_judge: Literal["reject", "keep"] = "reject"
    model: str = "generator"
    judge_model: str = "generator"

    _ops: tuple[evo.Operation, ...] = PrivateAttr(default=())
    _templates: dict[str, PromptTemplate] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        if self.rounds < 1:
            raise ConfigError(f"step {self.name!r}: rounds must be >= 1")
        self._ops = evo.operations(self.mode, self.operations or None)
        names = {op.template for op in self._ops} | {"evol_equal.j2"}
        self._templates = {n: PromptTemplate(n) for n in names}

    def input_columns(self) -> set[str]:
        return {"instruction"}

    def output_columns(self, available: set[str]) -> set[str]:
        return {"instruction", "output", "round", "operation", "seed_instruction"}

    def model_roles(self) -> set[str]:
        return {self.model} | ({self.judge_model} if self.judge else set())

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        # pool entries: (seed row: fixes the seeds of its lineage, current version row)
        pool: list[tuple[Row, Row]] = []
        for row in rows:
            text = str(row.get("instruction") or "").strip()
            if row.get("input"):
                text = f"{text}\n{row['input']}"  # WizardLM joins instruction and input
            if text:
                start = ctx.derive(meta_only(row), {"instruction": text, "output": "", "round": 0,
                                                    "operation": "seed", "seed_instruction": text})
                pool.append((row, start))
        out: list[Any] = []
        for rnd in range(1, self.rounds + 1):
            results = await asyncio.gather(*(self._evolve(seed, current, rnd, ctx) for seed, current in pool))
            for k, (ok, outcome) in enumerate(results):
                out.append(outcome)
                if ok:
                    pool[k] = (pool[k][0], outcome)  # the evolved version is evolved further next round
        return out

    async def _evolve(self, seed_row: Row, current: Row, rnd: int, ctx: StepContext) -> tuple[bool, Any]:
        base = rnd * 8  # sample indexes per (lineage, round): 0 op choice, 1 rewrite, 2 response, 3 judge
        op = random.Random(ctx.seed_for(seed_row, base)).choice(self._ops)
        original = current["instruction"]
        template = self._templates[op.template]
        rewrite = await ask(ctx, self.model, template.render({"instruction": original, "method": op.method}),
                            seed=ctx.seed_for(seed_row, base + 1), temperature=self.temperature, top_p=self.top_p,
                            max_tokens=self.evolve_max_tokens, prompt_sha=template.sha)
        evolved = evo.clean_evolved(rewrite.text)
        raw = {f"{self.name}/rewrite": rewrite.text}
        meta = {k: v for k, v in rewrite.meta.items()}

        def result(reason: str, response: str = "", detail: str = "") -> tuple[bool, Any]:
            row = ctx.derive(current, {"instruction": evolved, "output": response, "round": rnd,
                                       "operation": op.name}, raw=raw, **meta)
            return (False, Rejected(reason, row, detail or f"{op.name}: kept the original")) if reason else (True, row)

        if rewrite.error:
            return result("invalid_request", detail=rewrite.error)
        if rewrite.finish_reason == "length":  # a rewrite cut off mid-sentence is no instruction
            return result("truncated", detail=f"{op.name}: the rewrite hit max_tokens={self.evolve_max_tokens}")
        reason = evo.cheap_elimination(original, evolved, None)
        if reason:
            return result(reason)
        answer = await ask(ctx, self.model, evolved, seed=ctx.seed_for(seed_row, base + 2),
                           temperature=self.temperature, top_p=self.top_p, max_tokens=self.response_max_tokens)
        raw[f"{self.name}/response"] = answer.text
        if answer.error:
            return result("invalid_request", detail=answer.error)
        response = answer.text.strip()
        if answer.finish_reason == "length":  # the response is the training target: never a cut-off one
            return result("truncated", response, f"the response hit max_tokens={self.response_max_tokens}")
        reason = evo.cheap_elimination(original, evolved, response)
        if reason:
            return result(reason, response)
        if self.judge:
            equal = self._templates["evol_equal.j2"]
            request = calls.choice_request([{"role": "user", "content": equal.render({"first": original,
                                                                                    "second": evolved})}],
                                           evo.EQUALITY_LABELS, seed=ctx.seed_for(seed_row, base + 3))
            try:
                reading = await calls.choose(ctx, self.judge_model, request, CallLog(), f"{self.name}/judge")
            except InvalidRequestError as e:
                return result("invalid_request", response, str(e))
            raw[f"{self.name}/judge"] = reading.raw
            if reading.label == "Equal":
                return result("no_information_gain", response, "judge: Equal")
            if reading.label is None and self.unreadable_judge == "reject":
                return result("judge_unreadable", response, f"judge said {reading.raw[:60]!r}")
        return result("", response)


# -- execution feedback -------------------------------------------------------------------------------


@register_step("code_problem")
class CodeProblem(Step):
    """Give every problem an `input` and an `entry_point` (from a column, the text's first def, or a default)."""

    default_entry_point: str = "solution"

    def input_columns(self) -> set[str]:
        return {"instruction"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"input", "entry_point"}

    def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        out = []
        for row in rows:
            entry = str(row.get("entry_point") or "").strip()
            if not entry.isidentifier():
                entry = first_function_name(f"{row['instruction']}\n{row.get('input') or ''}\n{row.get('output') or ''}")
            entry = entry or self.default_entry_point
            out.append(ctx.derive(row, {"input": str(row.get("input") or ""), "entry_point": entry}))
        return out


_POOLS: dict[tuple[int, str], Any] = {}


def shared_sandbox(workers: int, isolation: str) -> Any:
    """One sandbox pool per (workers, isolation) for the process: warm workers are reused across runs."""
    from synthloom.verify.code import SandboxPool

    key = (workers, isolation)
    if key not in _POOLS:
        _POOLS[key] = SandboxPool(workers=workers, isolation=isolation)  # type: ignore[arg-type]
    return _POOLS[key]


@register_step("execute_code")
class ExecuteCode(Step):
    """Run every sampled solution against every extracted assert in the sandbox; keep a verified one.

    selection: "dual_agreement" (CodeT: consensus sets by passed-test set, score = |solutions| x
    |tests|) or "first_passing" (Code Llama: first solution passing every test). The kept
    solution is re-run alone on the tests it passed and must come back `verified`; the verdict is
    recorded in `_meta.verdicts["code_exec"]`.
    """

    selection: Literal["dual_agreement", "first_passing"] = "dual_agreement"
    solutions_column: str = "solutions"
    tests_column: str = "test_samples"
    tests_per_sample: int = 5  # CodeT test_case_limit
    min_tests: int = 1
    workers: int = 2
    isolation: Literal["bwrap", "none"] = "bwrap"
    test_timeout_s: float = 1.0
    wall_s: float = 10.0
    memory_mb: int = 1024

    def input_columns(self) -> set[str]:
        return {self.solutions_column, self.tests_column, "entry_point"}

    def output_columns(self, available: set[str]) -> set[str]:
        return available | {"solution", "tests", "agreement_score", "num_solutions", "num_tests"}

    def _limits(self) -> Any:
        from synthloom.verify.code import SandboxLimits

        return SandboxLimits(wall_s=self.wall_s, cpu_s=max(1, int(self.wall_s)), memory_bytes=self.memory_mb << 20,
                             test_timeout_s=self.test_timeout_s)

    async def process(self, rows: list[Row], ctx: StepContext) -> list[Any]:
        from synthloom.verify.code import Snippet

        pool = shared_sandbox(self.workers, self.isolation)
        plans: list[tuple[list[str], list[str]] | Rejected] = []
        snippets: list[Any] = []
        for row in rows:
            plan = self._plan(row)
            plans.append(plan)
            if not isinstance(plan, Rejected):
                codes, tests = plan
                snippets.extend(Snippet(code, tests=tuple(tests)) for code in dict.fromkeys(codes))
        results = iter(await pool.run_many(snippets, self._limits()) if snippets else [])
        chosen: list[tuple[Row, str, list[str], int, int, int] | Rejected] = []
        for row, plan in zip(rows, plans):
            if isinstance(plan, Rejected):
                chosen.append(plan)
                continue
            codes, tests = plan
            by_code = {code: passed_tests(next(results), len(tests)) for code in dict.fromkeys(codes)}
            passed = [by_code[c] for c in codes]  # duplicates count once per sample, as in CodeT
            pick, score = self._select(passed, len(tests))
            if pick is None or len(passed[pick]) < self.min_tests:
                best = max((len(p) for p in passed), default=0)
                chosen.append(Rejected("no_passing_solution",
                                       self._tag(row, False, f"best solution passed {best}/{len(tests)} tests"),
                                       f"{len(codes)} solutions x {len(tests)} tests"))
                continue
            kept_tests = [tests[i] for i in sorted(passed[pick])]
            chosen.append((row, codes[pick], kept_tests, score, len(codes), len(tests)))
        # Confirm each kept solution by a clean run on exactly the tests it is kept with.
        confirm = [Snippet(c[1], tests=tuple(c[2])) for c in chosen if not isinstance(c, Rejected)]
        confirmed = iter(await pool.run_many(confirm, self._limits()) if confirm else [])
        out: list[Any] = []
        for item in chosen:
            if isinstance(item, Rejected):
                out.append(item)
                continue
            row, code, tests, score, n_sol, n_tests = item
            check = next(confirmed)
            new = ctx.derive(row, {"solution": code, "tests": tests, "agreement_score": score,
                                   "num_solutions": n_sol, "num_tests": n_tests})
            detail = (f"{self.selection}: passes {check.tests_passed}/{check.tests_total} tests "
                      f"(score {score}; {n_sol} solutions x {n_tests} tests)")
            if check.verified:
                add_verdict(new, "code_exec", True, detail)
                out.append(new)
            else:
                add_verdict(new, "code_exec", False, f"confirmation run: {check.status}")
                out.append(Rejected("confirmation_failed", new, f"status {check.status}: {check.stderr[-200:]}"))
        return out

    def _plan(self, row: Row) -> tuple[list[str], list[str]] | Rejected:
        entry = str(row["entry_point"])
        samples = row[self.solutions_column]
        samples = [samples] if isinstance(samples, str) else list(samples or [])
        codes = [c for c in (extract_solution(str(s), entry) for s in samples) if c]
        if not codes:
            return Rejected("no_solution", self._tag(row, False, "no compilable code defining the entry point"),
                            f"{len(samples)} samples; none defines {entry}()")
        test_samples = row[self.tests_column]
        test_samples = [test_samples] if isinstance(test_samples, str) else list(test_samples or [])
        tests: list[str] = []
        for sample in test_samples:
            for t in extract_asserts(str(sample), entry, self.tests_per_sample):
                if t not in tests:
                    tests.append(t)
        if not tests:
            # code without asserts is never verified (nothing was checked)
            return Rejected("no_tests", self._tag(row, False, "no compilable assert calling the entry point"),
                            f"{len(test_samples)} test samples; none has an assert on {entry}()")
        return codes, tests

    def _select(self, passed: list[frozenset[int]], n_tests: int) -> tuple[int | None, int]:
        if self.selection == "first_passing":
            pick = first_passing(passed, n_tests)
            return pick, (n_tests if pick is not None else 0)
        ranked = dual_agreement(passed)
        top = ranked[0]
        return (top.solutions[0], top.score) if top.score > 0 else (None, 0)

    @staticmethod
    def _tag(row: Row, ok: bool, detail: str) -> Row:
        row = {**row, META: {**meta_of(row), "verdicts": dict(meta_of(row).get("verdicts", {}))}}
        return add_verdict(row, "code_exec", ok, detail)
