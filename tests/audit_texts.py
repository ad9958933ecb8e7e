"""Constructed text sets with known relations, for the audit tests: two domains from templates."""

from __future__ import annotations

import random

_DOMAINS = {
    "cooking": (["Simmer the", "Roast the", "Chop the", "Whisk the", "Bake the", "Grill the", "Season the", "Fry the"],
                ["onions", "garlic", "carrots", "chicken", "salmon", "potatoes", "eggs", "tomatoes", "mushrooms", "lentils"],
                ["until golden brown", "with olive oil and salt", "for twenty minutes", "over low heat",
                 "before serving with bread", "in a hot pan", "with fresh herbs", "until tender"]),
    "finance": (["The central bank raised", "Investors sold", "The company reported", "Analysts expect", "The fund bought",
                 "Regulators reviewed", "Traders hedged", "The board approved"],
                ["interest rates", "quarterly earnings", "government bonds", "the merger", "currency futures",
                 "dividend payments", "the stock buyback", "mortgage lending"],
                ["after the announcement", "amid market volatility", "for the third quarter", "despite weak guidance",
                 "ahead of the election", "as yields climbed", "to reduce risk", "in early trading"]),
}


def domain(kind: str, n: int, seed: int = 0) -> list[str]:
    subj, obj, tail = _DOMAINS[kind]
    rng = random.Random(seed)
    return [f"{rng.choice(subj)} {rng.choice(obj)} {rng.choice(tail)}." for _ in range(n)]


def shuffled(texts: list[str], seed: int = 0) -> list[str]:
    out = list(texts)
    random.Random(seed).shuffle(out)
    return out
