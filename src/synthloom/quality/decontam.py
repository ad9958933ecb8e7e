"""Decontamination against evaluation sets: n-gram overlap, embedding retrieval, LLM-judge confirmation.

1. N-gram overlap (Brown et al. 2020, GPT-3; lm-evaluation-harness's Janitor): every N-gram (default 13) of
   every benchmark item is a contaminant; a training row sharing one is contaminated. Both sides are
   normalised by the same tokeniser (text.normalized_words: lowercase, punctuation and whitespace
   separate tokens), so re-indented or re-spaced code still matches. Detection is vectorised: all
   rows' n-gram hashes at once, looked up with a binary search in the sorted contaminant hashes.
   `janitor_clean` reproduces the Janitor's cleaning (cut 200 characters either side of each hit,
   drop fragments < 200 chars, drop rows with > 10 hits).
2. Embedding retrieval (LLM Decontaminator, §12 C): for each benchmark item the top-k most similar
   training rows by cosine similarity of sentence embeddings.
3. LLM judge: each retrieved pair is shown to a model that must answer True (same problem,
   rephrased) or False. Rephrasings evade n-grams and thresholds; the judge catches them.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from synthloom.errors import BadInputError
from synthloom.llm.base import ChatRequest, Model, chat_settled
from synthloom.llm.constrained import choice_request, strict_label
from synthloom.quality.benchmarks_data import BenchmarkItem
from synthloom.quality.embeddings import Embedder, top_k_cosine
from synthloom.text import (
    _ASCII_TOKEN,
    _UNICODE_TOKEN,
    TokenHasher,
    ascii_token_spans,
    fold_ascii,
    ngram_hashes,
    token_hashes_many,
)

DEFAULT_NGRAM = 13


@dataclass(frozen=True, slots=True)
class NgramHit:
    row: int
    benchmark: str
    item_id: str
    matches: int  # colliding n-gram windows in the row
    kind: str = "ngram"  # or "whole_statement": a statement shorter than n found whole in the row


@dataclass(frozen=True, slots=True)
class JudgedPair:
    row: int
    benchmark: str
    item_id: str
    similarity: float
    verdict: bool | None  # None: the judge never gave a parseable True/False
    raw: str


def _windows(th: np.ndarray, lens: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n-gram hashes, owning text index, window start token) from concatenated token hashes."""
    full = ngram_hashes(th, n)
    if len(full) == 0:
        empty = np.empty(0, dtype=np.int64)
        return np.empty(0, dtype=np.uint64), empty, empty
    starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
    owner = np.repeat(np.arange(len(lens)), lens)[: len(full)]
    pos = np.arange(len(full))
    valid = pos + n <= (starts + lens)[owner]
    return full[valid], owner[valid], (pos - starts[owner])[valid]


# Characters of texts hashed together: big enough to vectorise well, small enough that the
# uint64 temporaries (several per token) are reused heap memory rather than fresh pages.
_CHUNK_CHARS = 1 << 18


def _window_hashes(hasher: TokenHasher, texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n-gram windows of many texts at once (tokens as text.normalized_words)."""
    th, lens = token_hashes_many(texts, hasher)
    return _windows(th, lens, n)


def _chunk_bounds(texts: Sequence[str]) -> Iterator[int]:
    """End indices of consecutive chunks of texts of about _CHUNK_CHARS characters each."""
    stop = 0
    while stop < len(texts):
        size = 0
        while stop < len(texts) and (size == 0 or size + len(texts[stop]) <= _CHUNK_CHARS):
            size += len(texts[stop])
            stop += 1
        yield stop


def _chunked_window_hashes(
    hasher: TokenHasher, texts: Sequence[str], n: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`_window_hashes` over consecutive chunks of texts (owner indices refer to `texts`)."""
    start = 0
    for stop in _chunk_bounds(texts):
        hashes, owner, starts = _window_hashes(hasher, texts[start:stop], n)
        yield hashes, owner + start, starts
        start = stop


# Statements shorter than this are not matched whole: a 3-token statement ("Factorize x^2-1.")
# occurs inside unrelated text too often to call a row contaminated.
MIN_WHOLE_STATEMENT_TOKENS = 5


class _WholeStatements:
    """Benchmark statements shorter than the n-gram, matched as one whole token sequence.

    A 13-gram detector can never see an item with fewer than 13 tokens (18 of CHAMP's 270 problem
    statements, e.g. "Find 2^32+1 mod 641."), and a row quoting only the statement of an item
    whose text also holds its solution shares no 13-gram with it either. Each such statement of
    L tokens is hashed as one L-gram; a row is contaminated when one of its L-token windows
    equals it (the same normaliser and hash as the n-grams).
    """

    def __init__(self, hasher: TokenHasher, items: Sequence[BenchmarkItem], n: int) -> None:
        self.by_length: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for i, item in enumerate(items):
            for statement in {item.text, item.statement} - {""}:
                hashes, _, _ = _window_hashes(hasher, [statement], 1)
                length = len(hashes)
                if MIN_WHOLE_STATEMENT_TOKENS <= length < n:
                    whole, _, _ = _window_hashes(hasher, [statement], length)
                    self.by_length[length][int(whole[0])].append(i)
        self.count = len({i for table in self.by_length.values() for ids in table.values() for i in ids})

    def counts(self, hasher: TokenHasher, texts: Sequence[str]) -> dict[tuple[int, int], int]:
        """{(row, item): windows equal to the item's whole statement}."""
        counts: dict[tuple[int, int], int] = defaultdict(int)
        if not self.by_length:
            return counts
        keys = {length: np.sort(np.fromiter(table, dtype=np.uint64, count=len(table)))
                for length, table in self.by_length.items()}
        start = 0
        for stop in _chunk_bounds(texts):
            th, lens = token_hashes_many(texts[start:stop], hasher)  # tokenised once for every length
            for length, table in self.by_length.items():
                hashes, owner, _ = _windows(th, lens, length)
                pos = np.minimum(np.searchsorted(keys[length], hashes), len(keys[length]) - 1)
                found = keys[length][pos] == hashes
                for h, row in zip(hashes[found].tolist(), (owner[found] + start).tolist()):
                    for item in set(table[h]):
                        counts[(row, item)] += 1
            start = stop
        return counts


class NgramIndex:
    """Contaminant n-grams of a set of benchmark items, for fast membership and attribution.

    Statements shorter than n tokens (at least MIN_WHOLE_STATEMENT_TOKENS) are matched whole
    instead (`NgramHit.kind == "whole_statement"`); `short_statements` counts the items covered.
    """

    def __init__(self, items: Sequence[BenchmarkItem], n: int = DEFAULT_NGRAM) -> None:
        if n < 1:
            raise BadInputError(f"n-gram size must be >= 1, got {n}")
        self.n = n
        self.items = list(items)
        self._hasher = TokenHasher()
        self._whole = _WholeStatements(self._hasher, self.items, n)
        self.short_statements = self._whole.count
        hashes, owner, _ = _window_hashes(self._hasher, [i.text for i in self.items], n)
        order = np.argsort(hashes, kind="stable")
        self._keys, self._key_item = hashes[order], owner[order]
        # Bitmap prefilter on the low hash bits: most windows are rejected by one gather, and
        # only the few candidates pay for the binary search.
        bits = max(16, min(26, int(np.ceil(np.log2(max(len(self._keys), 1) * 64)))))
        self._mask = np.uint64((1 << bits) - 1)
        self._bitmap = np.zeros(1 << bits, dtype=bool)
        self._bitmap[(self._keys & self._mask).astype(np.int64)] = True

    def __len__(self) -> int:
        return len(self._keys)

    def _lookup(self, hashes: np.ndarray) -> np.ndarray:
        found = self._bitmap[(hashes & self._mask).astype(np.int64)]
        cand = np.flatnonzero(found)
        if len(cand):
            pos = np.minimum(np.searchsorted(self._keys, hashes[cand]), len(self._keys) - 1)
            found[cand] = self._keys[pos] == hashes[cand]
        return found

    def scan(self, texts: Sequence[str]) -> list[NgramHit]:
        """Every (row, benchmark item) pair sharing at least one n-gram, with the window count."""
        counts: dict[tuple[int, int], int] = defaultdict(int)
        for hashes, owner, _ in _chunked_window_hashes(self._hasher, texts, self.n):
            found = self._lookup(hashes)
            for h, row in zip(hashes[found].tolist(), owner[found].tolist()):
                lo = np.searchsorted(self._keys, np.uint64(h), side="left")
                hi = np.searchsorted(self._keys, np.uint64(h), side="right")
                for item in set(self._key_item[lo:hi].tolist()):
                    counts[(row, item)] += 1
        found = [(row, 0, item, c) for (row, item), c in counts.items()]
        found += [(row, 1, item, c) for (row, item), c in self._whole.counts(self._hasher, texts).items()]
        return [NgramHit(row, self.items[item].benchmark, self.items[item].id, c, ("ngram", "whole_statement")[kind])
                for row, kind, item, c in sorted(found)]

    def contaminated_rows(self, texts: Sequence[str]) -> np.ndarray:
        """Boolean mask: rows sharing any n-gram (or a whole short statement) with any benchmark item."""
        mask = np.zeros(len(texts), dtype=bool)
        for hashes, owner, _ in _chunked_window_hashes(self._hasher, texts, self.n):
            mask[owner[self._lookup(hashes)]] = True
        for row, _ in self._whole.counts(self._hasher, texts):
            mask[row] = True
        return mask

    def janitor_clean(
        self,
        text: str,
        window_to_remove: int = 200,
        too_dirty_cutoff: int = 10,
        minimum_slice_length: int = 200,
    ) -> list[str]:
        """lm-evaluation-harness Janitor cleaning: the clean fragments of `text` ([] if too dirty)."""
        if text.isascii():  # the bulk: token spans and hashes straight from the bytes
            source = text
            begins, ends, token_hashes = ascii_token_spans(fold_ascii(text))
        else:
            source, spans = token_spans(text)
            begins = np.array([b for _, b, _ in spans], dtype=np.int64)
            ends = np.array([e for _, _, e in spans], dtype=np.int64)
            token_hashes = self._hasher.hash_tokens([t for t, _, _ in spans])
        if len(begins) < self.n:
            return [text]
        hashes, _, starts = _windows(token_hashes, np.array([len(begins)]), self.n)
        hit_starts = starts[self._lookup(hashes)].tolist()
        if not hit_starts:
            return [text]
        chunks, splice, end = [], 0, -1
        for i, s in enumerate(hit_starts):
            if i >= too_dirty_cutoff:
                return []
            start = max(0, int(begins[s]) - window_to_remove)
            end = min(len(source), int(ends[s + self.n - 1]) + window_to_remove)
            if start - splice > minimum_slice_length:
                chunks.append(source[splice:start])
            splice = end
        if end < len(source) - minimum_slice_length:
            chunks.append(source[end + 1 :])
        return chunks


def token_spans(text: str) -> tuple[str, list[tuple[str, int, int]]]:
    """(source, [(token, start, end)]) with tokens identical to normalized_words(text).

    Offsets refer to `source`: the text itself, or for the rare non-ASCII rows its NFKC form
    (lowercased too when lowercasing changes lengths), which is what detection tokenised.
    """
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    lowered = text.lower()
    if len(lowered) != len(text):
        text = lowered
    pattern = _ASCII_TOKEN if lowered.isascii() else _UNICODE_TOKEN
    return text, [(m.group(), m.start(), m.end()) for m in pattern.finditer(lowered)]


# --- embedding retrieval + LLM judge --------------------------------------------------------------

JudgeKind = Literal["code", "math", "knowledge"]

# Paraphrased from the LLM Decontaminator's per-type instructions (Yang et al. 2023, rephrased samples).
JUDGE_INSTRUCTIONS: dict[str, str] = {
    "code": (
        "I will give you two programming problems, part1 and part2. Decide whether they address the "
        "same problem. Consider only the objective, the inputs and the outputs; ignore wording, names "
        "and formatting. Answer with exactly one word: True or False."
    ),
    "math": (
        "I will give you two math questions, part1 and part2. Decide whether they are the same "
        "question, disregarding names, minor changes in word order and the way numbers are written. "
        "Answer with exactly one word: True or False."
    ),
    "knowledge": (
        "I will give you two questions, part1 and part2. Decide whether they ask the same thing, "
        "disregarding names and minor changes in word order. Answer with exactly one word: True or False."
    ),
}

JUDGE_LABELS = ("True", "False")


def parse_verdict(text: str) -> bool | None:
    """True/False when the answer is that lone word (case-insensitive, optionally quoted or bolded);
    None for anything else — a sentence, a hedge or an echo is no verdict."""
    label = strict_label(text, JUDGE_LABELS)
    return None if label is None else label == "True"


def judge_request(train_text: str, bench_text: str, kind: JudgeKind, temperature: float, seed: int) -> ChatRequest:
    """A constrained choice between True and False (llm/constrained.py)."""
    return choice_request(
        [{"role": "system", "content": JUDGE_INSTRUCTIONS[kind]},
         {"role": "user", "content": f"part1: {bench_text}\n\npart2: {train_text}\n\nAnswer True or False:"}],
        JUDGE_LABELS, seed=seed, temperature=temperature, top_logprobs=0)


def _pair_seed(base: int, train_text: str, bench_text: str, attempt: int) -> int:
    h = hashlib.sha256(f"{base}\x00{attempt}\x00{train_text}\x00{bench_text}".encode()).digest()
    return int.from_bytes(h[:4], "little")


async def judge_pairs(
    model: Model,
    pairs: Sequence[tuple[str, str]],
    kind: JudgeKind = "code",
    temperature: float = 0.3,
    retries: int = 3,
    seed: int = 0,
) -> list[tuple[bool | None, str]]:
    """Ask the judge about each (train_text, bench_text) pair; re-ask (new seed) when unparseable."""
    if kind not in JUDGE_INSTRUCTIONS:
        raise BadInputError(f"unknown judge kind {kind!r}: use {', '.join(JUDGE_INSTRUCTIONS)}")
    results: list[tuple[bool | None, str]] = [(None, "")] * len(pairs)
    pending = list(range(len(pairs)))
    for attempt in range(max(1, retries)):
        if not pending:
            break
        reqs = [judge_request(*pairs[i], kind, temperature, _pair_seed(seed, *pairs[i], attempt)) for i in pending]
        answers = await chat_settled(model, reqs)
        still = []
        for i, ans in zip(pending, answers):
            raw = ans.text if not isinstance(ans, BaseException) else f"error: {ans}"
            verdict = None if isinstance(ans, BaseException) else parse_verdict(raw)
            results[i] = (verdict, raw)
            if verdict is None:
                still.append(i)
        pending = still
    return results


def retrieve_pairs(
    items: Sequence[BenchmarkItem],
    texts: Sequence[str],
    embedder: Embedder,
    top_k: int = 1,
    min_similarity: float = -1.0,
) -> list[tuple[int, int, float]]:
    """(row, item index, cosine) for each benchmark item's top-k most similar rows."""
    if top_k < 1:
        raise BadInputError(f"top_k must be >= 1, got {top_k}")
    item_emb = embedder.encode([i.text for i in items])
    row_emb = embedder.encode(list(texts))
    idx, sc = top_k_cosine(item_emb, row_emb, top_k)
    out = []
    for item in range(idx.shape[0]):
        for row, s in zip(idx[item].tolist(), sc[item].tolist()):
            if s >= min_similarity:
                out.append((row, item, float(s)))
    return out


@dataclass
class DecontamReport:
    rows: int
    settings: dict[str, Any]
    ngram_hits: list[NgramHit] = field(default_factory=list)
    judged: list[JudgedPair] = field(default_factory=list)

    def contaminated_rows(self) -> set[int]:
        rows = {h.row for h in self.ngram_hits}
        rows |= {j.row for j in self.judged if j.verdict}
        return rows

    def to_dict(self) -> dict[str, Any]:
        per_bench: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: {"ngram": [], "judge": []})
        for h in self.ngram_hits:
            per_bench[h.benchmark].setdefault(h.kind, []).append({"row": h.row, "item": h.item_id, "matches": h.matches})
        for j in self.judged:
            if j.verdict:
                per_bench[j.benchmark]["judge"].append({"row": j.row, "item": j.item_id, "similarity": round(j.similarity, 4)})
        return {
            "rows": self.rows,
            "contaminated_rows": len(self.contaminated_rows()),
            "settings": self.settings,
            "benchmarks": dict(per_bench),
            "judged_pairs": [asdict(j) for j in self.judged],
        }


async def decontaminate(
    texts: Sequence[str],
    items: Sequence[BenchmarkItem],
    ngram: int = DEFAULT_NGRAM,
    embedder: Embedder | None = None,
    judge: Model | None = None,
    top_k: int = 1,
    min_similarity: float = 0.5,
    judge_kind: JudgeKind = "code",
    judge_temperature: float = 0.3,
    seed: int = 0,
) -> DecontamReport:
    """Run the n-gram detector, and when an embedder and a judge are given, retrieval + judge."""
    settings: dict[str, Any] = {"ngram": ngram, "normaliser": "lowercase; letters/digits runs; per-char CJK/Thai; NFKC"}
    index = NgramIndex(items, ngram)
    settings["whole_statement"] = (f"{index.short_statements} item(s) with a statement of "
                                   f"{MIN_WHOLE_STATEMENT_TOKENS}-{ngram - 1} tokens matched whole (shorter than the n-gram)")
    report = DecontamReport(len(texts), settings, index.scan(texts))
    if embedder is not None and judge is not None:
        settings |= {
            "embedding_model": embedder.name, "top_k": top_k, "min_similarity": min_similarity,
            "judge_model": judge.identity, "judge_kind": judge_kind, "judge_temperature": judge_temperature,
        }
        pairs = retrieve_pairs(items, texts, embedder, top_k, min_similarity)
        verdicts = await judge_pairs(
            judge, [(texts[r], items[i].text) for r, i, _ in pairs], judge_kind, judge_temperature, seed=seed
        )
        report.judged = [
            JudgedPair(r, items[i].benchmark, items[i].id, s, v, raw)
            for (r, i, s), (v, raw) in zip(pairs, verdicts)
        ]
    elif (embedder is None) != (judge is None):
        raise BadInputError("paraphrase detection needs both an embedder and a judge model")
    return report
