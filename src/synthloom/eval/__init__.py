"""Evaluation suite: LLM-as-judge with AlpacaEval-2 length-controlled win rate, LongFact + SAFE
factuality with F1@K over a local FTS5 search engine, red teaming and model-written evaluations.
See docs/eval.md."""

from synthloom.eval.factuality import (
    SafeConfig,
    f1_at_k,
    generate_longfact_prompts,
    safe_evaluate,
    safe_rate_response,
)
from synthloom.eval.judge import (
    PairwiseConfig,
    RubricConfig,
    judge_pairwise,
    judge_rubric,
)
from synthloom.eval.lc_winrate import (
    LCWinRate,
    WinRate,
    length_controlled_winrate,
    raw_win_rate,
)
from synthloom.eval.redteam import (
    CallableClassifier,
    JudgeClassifier,
    MWEConfig,
    RedTeamConfig,
    model_written_eval,
    red_team,
    summarize_red_team,
)
from synthloom.eval.report import write_report
from synthloom.eval.search import CallableSearch, LocalSearch, SearchResult

__all__ = [
    "CallableClassifier", "CallableSearch", "JudgeClassifier", "LCWinRate", "LocalSearch", "MWEConfig",
    "PairwiseConfig", "RedTeamConfig", "RubricConfig", "SafeConfig", "SearchResult", "WinRate", "f1_at_k",
    "generate_longfact_prompts", "judge_pairwise", "judge_rubric", "length_controlled_winrate",
    "model_written_eval", "raw_win_rate", "red_team", "safe_evaluate", "safe_rate_response",
    "summarize_red_team", "write_report",
]
