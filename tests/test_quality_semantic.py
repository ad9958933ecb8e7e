import numpy as np
import pytest

from synthloom.quality.semdedup import semantic_dedup, semantic_dedup_embeddings


def test_cosine_grouping_on_given_embeddings():
    e = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.05, 1.0]])
    r = semantic_dedup_embeddings(e, 0.95)
    assert r.keep.tolist() == [True, False, True, False] and r.cluster.tolist() == [0, 0, 2, 2]


@pytest.mark.slow
def test_paraphrases_grouped_with_real_minilm():
    from synthloom.quality.embeddings import default_embedder

    texts = [
        "How do I reverse a list in Python?",
        "What is the way to reverse a Python list?",
        "Give me a recipe for chocolate chip cookies.",
        "Explain how vaccines train the immune system.",
        "How can a list be reversed in Python?",
    ]
    emb = default_embedder().encode(texts)
    assert emb.shape == (5, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    r = semantic_dedup(texts, default_embedder(), threshold=0.8)
    assert r.keep.tolist() == [True, False, True, True, False]
    assert r.settings["embedding_model"] == "all-MiniLM-L6-v2"
