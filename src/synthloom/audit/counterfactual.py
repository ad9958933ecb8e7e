"""Counterfactual check of a model's answers: swap group terms in each prompt, compare the outcomes.

After counterfactual data augmentation (Lu et al. 2018) and HELM's fairness perturbations
(Liang et al. 2022): a prompt mentioning a group is asked again with every group term swapped
("she" <-> "he", "mother" <-> "father"); the second answer is swapped back and compared with the
first. An answer pair *differs* when the texts are not equal after normalisation and their
embedding cosine is below `similarity_min`. The check fails when too many pairs differ.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from synthloom.audit.checks import Check, rounded
from synthloom.errors import BadInputError
from synthloom.text import normalize


def swap_table(category: str = "gender") -> dict[str, str]:
    from synthloom.audit.bias import word_lists

    pairs = word_lists()[2].get(category)
    if not pairs:
        raise BadInputError(f"no counterfactual swaps for category {category!r}")
    table: dict[str, str] = {}
    for a, b in pairs:
        table.setdefault(a, b)
        table.setdefault(b, a)
    return table


def swap_terms(text: str, table: dict[str, str]) -> tuple[str, int]:
    """`text` with every whole-word group term replaced by its counterpart (case kept), and the count."""
    count = 0

    def one(m: re.Match[str]) -> str:
        nonlocal count
        word = m.group(0)
        other = table.get(word.lower())
        if other is None:
            return word
        count += 1
        return other.upper() if word.isupper() and len(word) > 1 else other.capitalize() if word[0].isupper() else other

    return re.sub(r"[A-Za-z]+", one, text), count


async def counterfactual_check(prompts: Sequence[str], model: Any, embedder: Any, *, category: str = "gender",
                               max_pairs: int = 50, max_tokens: int = 96, limits: Any = None, seed: int = 0,
                               examples: int = 5) -> dict[str, Any]:
    """Ask `model` each distinct prompt with group terms and its swapped twin (greedy); compare answers."""
    from synthloom.audit.bias import BiasLimits
    from synthloom.llm.base import ChatRequest, chat_settled

    limits = limits or BiasLimits()
    similarity_min, differ_max = limits.counterfactual_similarity_min, limits.counterfactual_differ_max

    table = swap_table(category)
    pairs = [(p, s) for p in dict.fromkeys(prompts) for s, n in [swap_terms(p, table)] if n][:max_pairs]
    if not pairs:
        return {"measures": {"pairs": 0, "category": category},
                "checks": [Check("counterfactual_differ_share", None, differ_max, False,
                                 "counterfactual swaps", f"no prompt mentions {category} terms").as_dict()]}
    requests = [ChatRequest([{"role": "user", "content": text}], temperature=0.0, max_tokens=max_tokens, seed=seed)
                for pair in pairs for text in pair]
    answers = [r.text if not isinstance(r, BaseException) else None for r in await chat_settled(model, requests)]
    originals, swapped = answers[0::2], answers[1::2]
    kept = [(i, a, swap_terms(b, table)[0]) for i, (a, b) in enumerate(zip(originals, swapped))
            if a is not None and b is not None]
    if not kept:
        raise BadInputError("the model answered none of the counterfactual prompts")
    va = embedder.encode([a for _, a, _ in kept])
    vb = embedder.encode([b for _, _, b in kept])
    cos = np.sum(va * vb, axis=1)
    same = np.array([normalize(a) == normalize(b) for _, a, b in kept])
    differ = (~same) & (cos < similarity_min)
    worst = [int(j) for j in np.argsort(cos)[:examples] if differ[j]]
    measures = {"category": category, "pairs": len(kept), "failed_requests": len(pairs) - len(kept),
                "identical_share": rounded(same.mean()), "mean_cosine": rounded(cos.mean()),
                "differ_share": rounded(differ.mean()),
                "examples": [{"prompt": pairs[kept[j][0]][0][:200], "swapped_prompt": pairs[kept[j][0]][1][:200],
                              "answer": kept[j][1][:200], "swapped_answer_swapped_back": kept[j][2][:200],
                              "cosine": rounded(cos[j])} for j in worst]}
    check = Check("counterfactual_differ_share", float(differ.mean()), differ_max, False,
                  f"{category} terms swapped in prompts; answers compared after swapping back "
                  f"(differ: not equal and cosine < {similarity_min:g})")
    return {"measures": measures, "checks": [check.as_dict()]}
