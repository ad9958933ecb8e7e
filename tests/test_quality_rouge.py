import random

import pytest
from rouge_score import rouge_scorer

from synthloom.errors import BadInputError
from synthloom.quality.lcs import lcs_length
from synthloom.quality.rouge import NoveltyPool, rouge_l

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
VOCAB = "the a of write function list sum python numbers given input return string find sort".split()
EDGE = ["", "!!! ??", "...", "the the the the", "a", "A a A a a", "sum, sum; SUM!", "x " * 70, "Python 3.11 rocks"]


def _random_text(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return rng.choice(EDGE)
    sep = rng.choice([" ", ", ", " - ", "  "])
    return sep.join(rng.choice(VOCAB).capitalize() if rng.random() < 0.2 else rng.choice(VOCAB)
                    for _ in range(rng.randint(0, 80 if rng.random() < 0.1 else 14)))


def test_rouge_l_equals_rouge_score_on_random_pairs():
    rng = random.Random(7)
    for _ in range(2500):
        a, b = _random_text(rng), _random_text(rng)
        assert rouge_l(a, b) == SCORER.score(a, b)["rougeL"].fmeasure, (a, b)


@pytest.mark.slow
def test_online_pool_decisions_equal_rouge_score():
    rng = random.Random(3)
    pool, ref_pool = NoveltyPool(0.7), []
    for _ in range(500):
        text = _random_text(rng)
        res = pool.add_if_novel(text)
        scores = [SCORER.score(text, p)["rougeL"].fmeasure for p in ref_pool]
        best = max(scores, default=0.0)
        assert res.accepted == (not best > 0.7)
        assert res.max_score == best
        if scores and best > 0:
            assert SCORER.score(text, res.most_similar)["rougeL"].fmeasure == best
        if res.accepted:
            ref_pool.append(text)
    assert len(pool) == len(ref_pool) and 0 < len(ref_pool) < 500


def test_pool_long_candidates_use_bigint_path():
    rng = random.Random(5)
    long_texts = [" ".join(rng.choice(VOCAB) for _ in range(90)) for _ in range(30)]
    pool = NoveltyPool(0.7, initial=long_texts[:20])
    for t in long_texts[20:]:
        expected = max(SCORER.score(t, p)["rougeL"].fmeasure for p in long_texts[:20])
        assert pool.score(t)[0] == expected


def test_self_instruct_semantics_accepted_join_immediately():
    pool = NoveltyPool(0.7, initial=["Write a poem about the sea."])
    assert not pool.add_if_novel("Write a poem about the sea!").accepted
    first = pool.add_if_novel("Explain how a rainbow forms in the sky.")
    assert first.accepted and len(pool) == 2
    again = pool.add_if_novel("Explain how a rainbow forms in the sky today.")
    assert not again.accepted and again.most_similar == "Explain how a rainbow forms in the sky."
    batch = NoveltyPool(0.7).filter(["sort a list of numbers", "sort a list of the numbers", "reverse a string"])
    assert [r.accepted for r in batch] == [True, False, True]


def test_chinese_instructions_compared_per_character():
    pool = NoveltyPool(0.7, initial=["写一首关于大海的诗"])
    assert not pool.add_if_novel("写一首关于大海的短诗").accepted
    assert pool.add_if_novel("解释彩虹是如何形成的").accepted


def test_lcs_bigint_matches_dp():
    rng = random.Random(1)
    for _ in range(300):
        a = [rng.randrange(4) for _ in range(rng.randrange(0, 150))]
        b = [rng.randrange(4) for _ in range(rng.randrange(0, 150))]
        t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                t[i][j] = t[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(t[i - 1][j], t[i][j - 1])
        assert lcs_length(a, b) == t[-1][-1]


def test_bad_threshold_is_a_clear_error():
    with pytest.raises(BadInputError):
        NoveltyPool(1.5)
