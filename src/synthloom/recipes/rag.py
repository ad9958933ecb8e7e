"""rag: QA / instruction data grounded in a corpus, every row citing its passages, judged for faithfulness.

Topics (one per row) retrieve top-k passages from a local SQLite FTS5 index (`synthloom.eval.search.
LocalSearch`: a user JSONL/text corpus, or the eval suite's bundled corpus). The generator writes a
question (or instruction) about the topic from the passages, then, in a second call over the same
passages, an answer that cites passage ids; `rag_cite` records which passage
ids the answer relies on; a judge role decides whether the answer is supported by the cited passages
(verdict `faithfulness`, plus the model-free `grounding` word-support verdict).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthloom.pipeline.builtins import ExactDedup, FormatAs, Select
from synthloom.pipeline.model_step import ModelStep
from synthloom.pipeline.pipeline import Pipeline, Source
from synthloom.recipes.loop_steps import Cite, Faithfulness, Retrieve
from synthloom.recipes.registry import RecipeOptions

NAME = "rag"
DESCRIPTION = "RAG-grounded QA / instructions from a corpus (FTS5 retrieval); rows cite passage ids; judge checks faithfulness."

# first line of the reply, without an echoed "Question:"/"Instruction:" label
QUESTION_PATTERN = r"^\s*(?:\**(?:question|instruction)\s*:\**\s*)?(?P<question>[^\n]{8,}?)\s*(?:\n|$)"

class Options(RecipeOptions):
    corpus: str | None = Field(None, description="JSONL ({id, title, text}) or text corpus; default: bundled corpus")
    task: Literal["qa", "instruction"] = Field("qa", description="question/answer pairs or instruction/response pairs")
    num_topics: int = Field(20, ge=1, description="topics drawn from corpus titles when no --input is given")
    k: int = Field(2, ge=1, le=10, description="passages retrieved per topic")
    temperature: float = Field(0.7, ge=0)
    max_tokens: int = Field(128, ge=16)


def corpus_topics(corpus: str | None, n: int) -> list[dict]:
    """One topic per passage title (else the passage's first words), in corpus order."""
    import json
    from importlib import resources
    from pathlib import Path

    from synthloom.errors import BadInputError

    if corpus is None:
        text, jsonl = resources.files("synthloom.eval").joinpath("data/corpus.jsonl").read_text("utf-8"), True
    else:
        path = Path(corpus)
        if not path.is_file():
            raise BadInputError(f"corpus file {path} does not exist")
        text, jsonl = path.read_text("utf-8"), path.suffix == ".jsonl"
    if jsonl:
        passages = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        passages = [{"text": block} for block in text.split("\n\n") if block.strip()]
    topics = [str(p.get("title") or " ".join(str(p.get("text", "")).split()[:8])) for p in passages]
    return [{"topic": t} for t in dict.fromkeys(t for t in topics if t)][:n]


def build(options: Options) -> Pipeline:
    template = "rag_question.j2" if options.task == "qa" else "rag_instruction.j2"
    steps = [
        Retrieve(name="retrieve", query="topic", corpus=options.corpus, k=options.k),
        # two calls, not one: a small model asked for "question + answer" rarely keeps the format
        ModelStep(name="ask", prompt=template, parse="regex", pattern="(?i)" + QUESTION_PATTERN,
                  temperature=options.temperature, max_tokens=48),
        ModelStep(name="answer", prompt="rag_answer.j2", output="answer", temperature=0.0,
                  max_tokens=options.max_tokens),
        Cite(name="cite", column="answer"),
        # with keep_unverified, unfaithful rows go on to the verdict gate, which writes them to data/unverified.*
        Faithfulness(name="faithfulness", keep_unfaithful=options.keep_unverified),
        Select(name="keep_columns", columns=["topic", "question", "answer", "citations", "citation_source",
                                             "faithful", "support"]),
        ExactDedup(name="dedup", columns=["question", "answer"]),
        FormatAs(name="format", format="alpaca", fields={"instruction": "question", "output": "answer"},
                 keep_columns=True),
    ]
    return Pipeline(NAME, steps,
                    source=Source(generator=lambda: corpus_topics(options.corpus, options.num_topics),
                                  description="topics from corpus titles"),
                    models={"generator": "embedded", "judge": "embedded"}, description=DESCRIPTION,
                    required_checks=["faithfulness", "grounding"])
