import numpy as np

from synthloom.text import (
    TokenHasher,
    hash_strings,
    ngram_hashes,
    ngrams,
    normalize,
    rouge_words,
    words,
)


def test_words_lowercase_and_split_on_punctuation():
    assert words("Hello, World!  It's 3.5") == ["hello", "world", "it", "s", "3", "5"]


def test_cjk_and_thai_are_split_per_character_latin_kept_whole():
    assert words("我爱北京 café") == ["我", "爱", "北", "京", "café"]
    assert words("ภาษา") == ["ภ", "า", "ษ", "า"]
    assert words("日本語のテキスト")[:3] == ["日", "本", "語"]


def test_rouge_words_matches_rouge_score_tokenizer():
    from rouge_score import tokenize

    for text in ["Hello, World!", "naïve café 3.14", "a_b-c", "   ", "!!!", "İstanbul Ünïcode ß"]:
        assert rouge_words(text) == tokenize.tokenize(text, None)
    assert rouge_words("中文 text") == ["中", "文", "text"]  # rouge-score would drop the Chinese


def test_normalize_folds_case_punctuation_width():
    assert normalize("Hello,   WORLD!!") == normalize("hello world") == "hello world"
    assert normalize("ＡＢＣ　１２３") == "abc 123"  # full-width folded by NFKC


def test_ngram_hashes_order_sensitive_and_consistent():
    th = TokenHasher().hash_tokens("a b c a b c d".split())
    h = ngram_hashes(th, 3)
    assert len(h) == len(ngrams("a b c a b c d".split(), 3)) == 5
    assert h[0] == h[3] and h[0] != h[1]
    rev = ngram_hashes(TokenHasher().hash_tokens("c b a".split()), 3)
    assert rev[0] != h[0]
    assert len(ngram_hashes(th[:2], 3)) == 0


def test_hash_strings_stable_and_distinct():
    a = hash_strings(["abc", "abd", "x" * 100, ""])
    b = hash_strings(["abc", "abd", "x" * 100, ""])
    assert np.array_equal(a, b) and len(set(a.tolist())) == 4
