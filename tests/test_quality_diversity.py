import math

import numpy as np
import pytest
import sacrebleu

from synthloom.errors import BadInputError
from synthloom.quality.diversity import (
    distinct_n,
    diversity_report,
    mean_pairwise_cosine_distance,
    self_bleu,
    vendi_score,
)


def test_distinct_n_hand_computed():
    texts = ["a b a", "b c"]  # tokens: 5; unigrams {a,b,c}=3; bigrams {ab, ba, bc}=3 of 3
    assert distinct_n(texts, 1) == pytest.approx(3 / 5)
    assert distinct_n(texts, 2) == pytest.approx(3 / 5)
    assert distinct_n(texts, 2, denominator="ngrams") == pytest.approx(3 / 3)
    assert distinct_n(["猫猫狗"], 1) == pytest.approx(2 / 3)
    with pytest.raises(BadInputError):
        distinct_n(texts, 1, denominator="chars")


def test_self_bleu_equals_sacrebleu_per_sentence():
    texts = ["the cat sat on the mat", "the dog sat on the log", "a bird flew over the house today",
             "the cat sat on a mat", "completely unrelated words here"]
    expected = np.mean([
        sacrebleu.sentence_bleu(t, texts[:i] + texts[i + 1:], smooth_method="floor", smooth_value=0.1).score / 100
        for i, t in enumerate(texts)
    ])
    assert self_bleu(texts) == pytest.approx(expected, abs=1e-12)
    assert self_bleu(["same words here"] * 4) == pytest.approx(1.0)


def test_vendi_and_distance_hand_computed():
    assert vendi_score(np.eye(4)) == pytest.approx(4.0)
    assert vendi_score(np.ones((5, 3))) == pytest.approx(1.0)
    # two identical + one orthogonal: K/n eigenvalues 2/3, 1/3
    x = np.array([[1.0, 0], [1.0, 0], [0, 1.0]])
    assert vendi_score(x) == pytest.approx(math.exp(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))))
    assert mean_pairwise_cosine_distance(x) == pytest.approx((0 + 1 + 1) / 3)
    assert vendi_score(x * 7.0) == pytest.approx(vendi_score(x))  # rows normalised


def test_report_ranks_repetitive_below_varied():
    varied = ["Explain photosynthesis to a child.", "Write a haiku about autumn rain.",
              "List three uses of binary search.", "Translate 'good morning' into French.",
              "Summarise the causes of World War One.", "Suggest a name for a bakery."]
    repetitive = ["Write a poem about the sea.", "Write a poem about the sea today.",
                  "Write a short poem about the sea.", "Write a poem about the blue sea.",
                  "Write a poem about the sea and sky.", "Write a poem about the sea please."]
    rv, rr = diversity_report(varied), diversity_report(repetitive)
    assert rv["distinct_2"] > rr["distinct_2"] and rv["distinct_1"] > rr["distinct_1"]
    assert rv["self_bleu_4"] < rr["self_bleu_4"]
    assert rr["self_bleu_settings"]["direction"] == "higher = less diverse"
