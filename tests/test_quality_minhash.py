import random

import numpy as np
import pytest
from datasketch.lsh import _optimal_param

from synthloom.errors import BadInputError
from synthloom.quality.minhash import (
    MinHasher,
    MinHashSettings,
    connected_first,
    exact_dedup,
    minhash_dedup,
    optimal_bands,
)


def _doc(rng: random.Random, n: int = 80) -> list[str]:
    return [f"w{rng.randrange(3000)}" for _ in range(n)]


def test_band_choice_matches_datasketch():
    for threshold, perms in [(0.7, 256), (0.5, 128), (0.85, 256)]:
        assert optimal_bands(threshold, perms) == _optimal_param(threshold, perms, 0.5, 0.5)


def test_exact_dedup_uses_normalised_text():
    r = exact_dedup(["Hello, World!", "hello world", "HELLO   world.", "other"])
    assert r.keep.tolist() == [True, False, False, True]
    assert r.cluster.tolist() == [0, 0, 0, 3]


def test_signature_agreement_estimates_jaccard():
    rng = random.Random(0)
    base = _doc(rng, 400)
    other = list(base)
    for i in rng.sample(range(400), 40):
        other[i] = f"x{i}"
    mh = MinHasher(num_perm=256, ngram=1)
    sig, _ = mh.signatures([" ".join(base), " ".join(other)])
    est = float((sig[0] == sig[1]).mean())
    true = len(set(base) & set(other)) / len(set(base) | set(other))
    assert abs(est - true) < 0.08


def test_planted_near_duplicates_found_unrelated_kept():
    rng = random.Random(1)
    docs, planted = [], []
    for _ in range(300):
        toks = _doc(rng)
        docs.append(" ".join(toks))
        if rng.random() < 0.3:
            dup = list(toks)
            dup[rng.randrange(len(dup))] = "changed"  # one edit: 5-gram Jaccard ~0.88
            planted.append((len(docs) - 1, len(docs)))
            docs.append(" ".join(dup))
    docs.append(docs[0].upper() + "!!!")  # exact (normalised) copy
    r = minhash_dedup(docs)
    assert all(r.cluster[b] == a and not r.keep[b] for a, b in planted)
    assert r.cluster[-1] == 0 and not r.keep[-1]
    assert r.n_removed == len(planted) + 1  # no unrelated document merged
    assert r.settings["bands"] == 25 and r.settings["rows"] == 10 and r.settings["ngram"] == 5


def test_below_threshold_not_merged_and_short_and_empty_texts():
    a = "the quick brown fox jumps over the lazy dog and runs far away into the forest"
    b = "a completely different sentence about databases indexes and query planning today"
    r = minhash_dedup([a, b, "", "", "short text", "Short text!"])
    assert r.keep.tolist() == [True, True, True, False, True, False]


def test_chinese_near_duplicates():
    a = "今天天气很好，我们一起去公园散步，然后去图书馆看书，晚上一起吃饭。"
    b = "今天天气很好，我们一起去公园散步，然后去图书馆看书，晚上一起吃面。"
    c = "机器学习是人工智能的一个分支，研究计算机如何从数据中学习规律。"
    assert minhash_dedup([a, b, c]).keep.tolist() == [True, False, True]


def test_union_find_chains():
    labels = connected_first(6, np.array([4, 2, 5]), np.array([2, 1, 0]))
    assert labels.tolist() == [0, 1, 1, 3, 1, 0]


def test_bad_settings_are_clear_errors():
    with pytest.raises(BadInputError):
        minhash_dedup(["a"], MinHashSettings(bands=100, rows=10))
    with pytest.raises(BadInputError):
        optimal_bands(1.5, 256)
