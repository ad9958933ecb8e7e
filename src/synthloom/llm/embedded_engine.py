"""Continuous-batching scheduler over one llama.cpp context, run by one background thread.

Every step builds ONE llama_batch holding the next token of every generating sequence plus a chunk
of pending prompt tokens (so long prompts never stall generation for more than one chunk), runs one
llama_decode, then samples all sequences at once with numpy. A waiting job takes free slots as soon
as a sequence finishes. `n>1` decodes the prompt once on the first slot and shares its KV cells with
the other slots (llama_memory_seq_cp) before they sample.

Prefix reuse: with per-slot KV streams (the batch-invariant default) a finished sequence leaves
its prompt's cells in its slot. A new job takes the free slot whose kept prompt shares the
longest prefix with its own and decodes only the rest, as llama.cpp's server does. When another
slot holds (or is about to hold) a longer shared prefix, the job copies that slot's cells instead,
waiting for a job still prefilling it if need be: jobs that arrive together with the same system
prompt, template or few-shot examples decode the shared part once. Reused cells hold exactly what
a fresh prefill would compute (see tests/test_embedded_prefix.py).

Only the engine thread touches the llama context. Jobs arrive through a thread-safe queue and report
back through a callback that the caller makes thread-safe (asyncio: call_soon_threadsafe).
"""

from __future__ import annotations

import codecs
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from synthloom.llm.base import ChatResponse, Choice, ModelError, TokenLogprob, Usage
from synthloom.llm.embedded_llama import (
    BatchBuffer,
    ContextOptions,
    GrammarFilter,
    LlamaModelFile,
    free_context,
    logits_view,
    memory_of,
    seq_copy,
    seq_remove,
)
from synthloom.llm.embedded_sampling import LogitsProcessor, SamplingParams, log_softmax, make_rng, sample_rows, top_k_indices

log = logging.getLogger("synthloom.llm.embedded")

JobCallback = Callable[[ChatResponse | BaseException], None]
# (sample index, new text): streamed pieces of a completion, called on the engine thread
DeltaCallback = Callable[[int, str], None]


@dataclass
class GenerationJob:
    """One chat request's worth of work: a tokenized prompt and how to sample `n` completions."""

    prompt: list[int]
    params: SamplingParams
    n: int
    budget: int  # max new tokens per completion (already clipped to the context)
    seed: int | None
    stop: list[str]
    callback: JobCallback
    grammar: str | None = None  # GBNF; each completion gets its own grammar sampler
    ignore_eos: bool = False
    model_name: str = ""
    on_delta: DeltaCallback | None = None  # streaming: text as it becomes final
    # > 0: a scoring job. No generation; the answer holds the log-probability of each of the
    # prompt's last `score_tokens` tokens given everything before it.
    score_tokens: int = 0
    # engine-side state
    cancelled: bool = False
    seqs: list["_Sequence"] = field(default_factory=list)
    prompt_done: int = 0
    # (leader job, n): wait until the leader has decoded n prompt tokens, then copy its cells
    follow: tuple["GenerationJob", int] | None = None
    n_finished: int = 0
    reserved_cells: int = 0  # KV cells still held for this job (prompt + unfinished budgets)
    scored: list[TokenLogprob] = field(default_factory=list)  # scoring jobs: the results so far

    @property
    def cells_needed(self) -> int:
        return len(self.prompt) + self.n * self.budget

    @property
    def reusable(self) -> int:
        """Prompt tokens that may come from cached cells: at least one token must be decoded (it
        yields the logits), and so must every position whose logits score the next token."""
        return max(0, len(self.prompt) - 1 - self.score_tokens)


class _Sequence:
    """One completion being generated in one slot."""

    __slots__ = (
        "job", "index", "seq_id", "rng", "grammar", "context", "n_past", "last", "n_generated",
        "text", "decoder", "offsets", "logprobs", "finish_reason", "streamed",
    )

    def __init__(self, job: GenerationJob, index: int, seq_id: int, grammar: GrammarFilter | None) -> None:
        self.job = job
        self.index = index
        self.seq_id = seq_id
        self.rng = make_rng(job.seed, index)
        self.grammar = grammar
        self.context: list[int] = list(job.prompt)  # what logits processors see
        self.n_past = 0
        self.last = -1
        self.n_generated = 0
        self.text = ""
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.offsets: list[int] = []  # len(text) before each generated token
        self.logprobs: list[TokenLogprob] | None = [] if job.params.logprobs else None
        self.finish_reason: str | None = None
        self.streamed = 0  # len(text) already passed to job.on_delta


# Logits rows turned into log-probabilities at once when scoring (each row is a float64 vocabulary).
_SCORE_BLOCK = 32


def _shared(kept: list[int] | None, prompt: list[int]) -> int:
    """Length of the common prefix of two token lists."""
    return len(os.path.commonprefix([kept, prompt])) if kept else 0


@dataclass
class EngineStats:
    """Counters for tests and benchmarks (read from any thread; written only by the engine)."""

    decode_calls: int = 0
    prompt_tokens_decoded: int = 0
    prompt_tokens_reused: int = 0  # prompt tokens found in a slot's KV cells (kept or copied)
    generated_tokens: int = 0
    jobs_completed: int = 0
    max_active_sequences: int = 0
    decode_seconds: float = 0.0  # inside llama_decode
    sample_seconds: float = 0.0  # numpy sampling, grammar, detokenizing, stop checks


class EmbeddedEngine:
    def __init__(
        self,
        model: LlamaModelFile,
        opts: ContextOptions,
        logits_processors: Sequence[LogitsProcessor] = (),
    ) -> None:
        self.model = model
        self.opts = opts
        self.logits_processors = list(logits_processors)
        self.stats = EngineStats()
        self._ctx = model.new_context(opts)
        self._mem = memory_of(self._ctx)
        self._batch = BatchBuffer(opts.n_batch + opts.n_slots)
        self._free_ids = set(range(opts.n_slots))
        # prompt tokens whose KV cells a free slot still holds (per-slot streams only)
        self._kept: dict[int, list[int]] = {}
        self._reserved_cells = 0
        self._inbox: queue.SimpleQueue[GenerationJob | None] = queue.SimpleQueue()
        self._waiting: deque[GenerationJob] = deque()
        self._prefilling: list[GenerationJob] = []
        self._generating: list[_Sequence] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="synthloom-llama-engine", daemon=True)
        self._thread.start()

    # ---- called from other threads -------------------------------------------------------
    def submit(self, job: GenerationJob) -> None:
        if self._closed:
            raise ModelError("the embedded engine is closed")
        self._inbox.put(job)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.put(None)
        self._thread.join()
        free_context(self._ctx)
        self._ctx = None

    # ---- engine thread -------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            idle = not (self._waiting or self._prefilling or self._generating)
            try:
                item = self._inbox.get() if idle else self._inbox.get_nowait()
                while True:
                    if item is None:
                        stopping = True
                    else:
                        self._waiting.append(item)
                    item = self._inbox.get_nowait()
            except queue.Empty:
                pass
            if stopping:
                break
            try:
                self._drop_cancelled()
                self._admit()
                if self._prefilling or self._generating:
                    self._step()
            except Exception as e:  # noqa: BLE001 - never let the thread die with jobs pending
                log.exception("embedded engine step failed")
                self._fail_all(ModelError(f"embedded engine failed: {e}"))
        self._fail_all(ModelError("the embedded engine was closed before this request finished"))

    def _fail_all(self, err: ModelError) -> None:
        jobs = {id(j): j for j in list(self._waiting) + self._prefilling + [s.job for s in self._generating]}
        self._waiting.clear()
        for job in jobs.values():
            for s in job.seqs:
                self._release(s)
            job.seqs.clear()
        for seq_id in list(self._kept):
            self._forget(seq_id)
        self._prefilling.clear()
        self._generating.clear()
        self._reserved_cells = 0
        for job in jobs.values():
            job.callback(err)

    def _release(self, seq: _Sequence) -> None:
        if seq.seq_id >= 0:
            prompt = seq.job.prompt
            holds_prompt = seq.n_past >= len(prompt)  # prefill done (and copied, for n > 1)
            if not self.opts.kv_unified and holds_prompt and seq_remove(self._mem, seq.seq_id, len(prompt)):
                self._kept[seq.seq_id] = prompt
            else:
                self._forget(seq.seq_id)
            self._free_ids.add(seq.seq_id)
            seq.seq_id = -1
        if seq.grammar is not None:
            seq.grammar.close()
            seq.grammar = None

    def _forget(self, seq_id: int) -> None:
        seq_remove(self._mem, seq_id)
        self._kept.pop(seq_id, None)

    def _grammars(self, job: GenerationJob) -> list[GrammarFilter | None]:
        """One grammar sampler per completion (each tracks its own parse state)."""
        if not job.grammar:
            return [None] * job.n
        made: list[GrammarFilter | None] = []
        try:
            for _ in range(job.n):
                made.append(GrammarFilter(self.model.grammar_sampler(job.grammar)))
        except Exception:
            for g in made:
                if g is not None:
                    g.close()
            raise
        return made

    def _take_slots(self, job: GenerationJob) -> list[int]:
        """The lowest free slots for a job; the first holds its prompt, the others get a copy.

        Low ids keep the busy slots contiguous, which matters more than anything a slot holds:
        llama.cpp decodes consecutive sequence ids of separate KV streams in one pass and splits
        the batch at every gap. The first slot's reusable prefix comes from its own kept cells or,
        if another slot holds clearly more of the prompt, from a copy of that slot."""
        prompt = job.prompt
        ids = sorted(self._free_ids)[: job.n]
        self._free_ids.difference_update(ids)
        first = ids[0]
        own = min(_shared(self._kept.pop(first, None), prompt), job.reusable)
        for seq_id in ids[1:]:
            self._forget(seq_id)
        source, n, leader = self._prefix_elsewhere(prompt, job.reusable)
        if n >= own + self._copy_worth and leader is not None and leader.prompt_done < n:
            self._forget(first)
            job.follow = (leader, n)
        elif n >= own + self._copy_worth:
            self._forget(first)
            self._copy_prefix(source, first, n, job)
        elif own > 0 and seq_remove(self._mem, first, own):
            job.prompt_done = own
            self.stats.prompt_tokens_reused += own
        else:
            self._forget(first)
        return ids

    @property
    def _copy_worth(self) -> int:
        # Copying a slot moves its whole KV stream (all its cells); decoding a prompt token costs
        # about as much as copying ~256 cells on CPU, so a copy must save at least that many.
        return 8 + self.opts.cells_per_slot // 256

    def _prefix_elsewhere(self, prompt: list[int], cap: int) -> tuple[int, int, GenerationJob | None]:
        """(slot, n, leader): the slot that holds, or will once `leader` has prefilled it, the
        longest prefix of `prompt` (n tokens, at most `cap`)."""
        if self.opts.kv_unified:
            return -1, 0, None
        best: tuple[int, int, GenerationJob | None] = (-1, 0, None)
        candidates = [(seq_id, kept, None) for seq_id, kept in self._kept.items()]
        candidates += [(s.seq_id, s.job.prompt, None) for s in self._generating if s.index == 0]
        candidates += [(j.seqs[0].seq_id, j.prompt, j) for j in self._prefilling if j.follow is None and j.seqs]
        for seq_id, tokens, leader in candidates:
            n = min(_shared(tokens, prompt), cap)
            if n > best[1]:
                best = (seq_id, n, leader)
        return best

    def _copy_prefix(self, source: int, dest: int, n: int, job: GenerationJob) -> None:
        seq_copy(self._mem, source, dest)  # the whole stream: llama.cpp copies streams entire
        if seq_remove(self._mem, dest, n):
            job.prompt_done = n
            self.stats.prompt_tokens_reused += n
        else:
            self._forget(dest)

    def _resolve_followers(self) -> None:
        """Copy the prefix into every waiting job whose leader has now decoded it."""
        for job in self._prefilling:
            if job.follow is None:
                continue
            leader, n = job.follow
            if leader.cancelled or not leader.seqs or leader.seqs[0].seq_id < 0:  # gone: prefill alone
                job.follow = None
            elif leader.prompt_done >= n:
                job.follow = None
                self._copy_prefix(leader.seqs[0].seq_id, job.seqs[0].seq_id, n, job)

    def _drop_cancelled(self) -> None:
        if any(j.cancelled for j in self._waiting):
            self._waiting = deque(j for j in self._waiting if not j.cancelled)
        for job in [j for j in self._prefilling if j.cancelled]:
            self._prefilling.remove(job)
            self._retire(job)
        for job in {id(s.job): s.job for s in self._generating if s.job.cancelled}.values():
            self._generating = [s for s in self._generating if s.job is not job]
            self._retire(job)

    def _retire(self, job: GenerationJob) -> None:
        for s in job.seqs:
            self._release(s)
        self._reserved_cells -= job.reserved_cells
        job.reserved_cells = 0
        job.seqs.clear()

    def _admit(self) -> None:
        # FIFO: a big job at the head waits for room rather than being overtaken forever.
        while self._waiting:
            job = self._waiting[0]
            if len(self._free_ids) < job.n:
                return
            # a shared KV pool must also have room for the whole job (own streams always do)
            if self.opts.kv_unified and self._reserved_cells + job.cells_needed > self.opts.n_ctx:
                return
            self._waiting.popleft()
            try:
                grammars = self._grammars(job)
            except Exception as e:  # noqa: BLE001 - a bad grammar fails only its own job
                job.callback(e)
                continue
            job.reserved_cells = job.cells_needed
            self._reserved_cells += job.reserved_cells
            for i, (seq_id, grammar) in enumerate(zip(self._take_slots(job), grammars)):
                job.seqs.append(_Sequence(job, i, seq_id, grammar))
            self._prefilling.append(job)

    def _step(self) -> None:
        # (seq_id, tokens, first position, first token with logits, what the logits are for:
        #  the sequences that sample from the one row, or a scoring job that reads every row)
        entries: list[tuple[int, list[int], int, int | None, list[_Sequence] | GenerationJob]] = []
        for seq in self._generating:
            entries.append((seq.seq_id, [seq.last], seq.n_past, 0, [seq]))
        room = self.opts.n_batch - len(entries)
        completed: list[GenerationJob] = []
        for job in self._prefilling:
            if room <= 0:
                break
            if job.follow is not None:
                continue
            start = job.prompt_done
            k = min(len(job.prompt) - start, room)
            done = start + k == len(job.prompt)
            if job.score_tokens:
                first_scoring = len(job.prompt) - 1 - job.score_tokens  # its logits score the next token
                logits_from = max(0, first_scoring - start) if start + k > first_scoring else None
                entries.append((job.seqs[0].seq_id, job.prompt[start : start + k], start, logits_from, job))
            else:
                entries.append((job.seqs[0].seq_id, job.prompt[start : start + k], start, k - 1 if done else None, job.seqs))
            job.prompt_done += k
            room -= k
            if done:
                completed.append(job)
        # ascending sequence ids: llama.cpp splits a batch of separate streams wherever ids skip
        entries.sort(key=lambda e: e[0])
        batch = self._batch
        batch.clear()
        sampled: list[tuple[int, list[_Sequence]]] = []  # (logits row, sequences)
        scored: list[tuple[GenerationJob, int, int, int]] = []  # (job, first row, rows, first position)
        n_rows = 0
        for seq_id, tokens, pos, logits_from, target in entries:
            added = batch.add(tokens, pos, seq_id, logits_from)
            if added and isinstance(target, GenerationJob):
                scored.append((target, n_rows, added, pos + (logits_from or 0)))
            elif added:
                sampled.append((n_rows, target))
            n_rows += added
        if batch.n == 0:  # only jobs waiting for a leader that has gone
            self._resolve_followers()
            return
        t0 = time.perf_counter()
        rc = batch.decode(self._ctx)
        t1 = time.perf_counter()
        self.stats.decode_seconds += t1 - t0
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} for a batch of {batch.n} tokens")
        self.stats.decode_calls += 1
        self.stats.prompt_tokens_decoded += batch.n - len(self._generating)
        for seq in self._generating:
            seq.n_past += 1
        # followers copy now, while every leader still holds its slot (a scoring leader releases
        # it below, a generating one may finish when it samples)
        self._resolve_followers()
        logits = logits_view(self._ctx, n_rows, self.model.n_vocab)
        for job, row, count, pos in scored:
            self._score(job, logits[row : row + count], pos)
        for job in completed:
            self._prefilling.remove(job)
            first = job.seqs[0]
            for s in job.seqs:
                if s is not first:
                    seq_copy(self._mem, first.seq_id, s.seq_id)
                s.n_past = len(job.prompt)
            if job.score_tokens:
                self._finish_scoring(job)
            else:
                self._generating.extend(job.seqs)
        self.stats.max_active_sequences = max(self.stats.max_active_sequences, len(self._generating))
        seqs = [s for _, group in sampled for s in group]
        row_of = np.fromiter((r for r, group in sampled for _ in group), dtype=np.int64, count=len(seqs))
        tokens = self._sample(seqs, logits[row_of])
        for seq, token in zip(seqs, tokens):
            self._advance(seq, int(token))
        self.stats.sample_seconds += time.perf_counter() - t1

    def _score(self, job: GenerationJob, rows: np.ndarray, pos: int) -> None:
        """Record log p(prompt[p + 1] | prompt[..p]) for the logits rows of positions pos, pos+1, ..."""
        pieces = self.model.pieces
        for start in range(0, len(rows), _SCORE_BLOCK):  # bounded float64 temporaries
            block = log_softmax(rows[start : start + _SCORE_BLOCK])
            for i, row in enumerate(block):
                p = pos + start + i
                if p + 1 < len(job.prompt):
                    token = job.prompt[p + 1]
                    job.scored.append(TokenLogprob(pieces[token].decode("utf-8", "replace"), float(row[token])))

    def _finish_scoring(self, job: GenerationJob) -> None:
        self._release(job.seqs[0])  # keeps the prompt's cells for the next request's prefix
        self._reserved_cells -= job.reserved_cells
        job.reserved_cells = 0
        self.stats.jobs_completed += 1
        usage = Usage(prompt_tokens=len(job.prompt), completion_tokens=0)
        job.callback(ChatResponse(choices=[Choice("", "score", job.scored)], usage=usage, model=job.model_name))

    def _sample(self, seqs: list[_Sequence], logits: np.ndarray) -> list[int]:
        """Pick one token per sequence from its (private copy of the) logits row."""
        eog = self.model.eog_ids
        for i, seq in enumerate(seqs):
            if seq.job.ignore_eos:
                logits[i, eog] = -np.inf
            for proc in self.logits_processors:
                proc(seq.context, logits[i])
        lp_idx = [i for i, s in enumerate(seqs) if s.logprobs is not None]
        logprob_rows = dict(zip(lp_idx, log_softmax(logits[lp_idx]))) if lp_idx else {}

        chosen = np.empty(len(seqs), dtype=np.int64)
        greedy = [i for i, s in enumerate(seqs) if s.job.params.greedy]
        if greedy:
            chosen[greedy] = logits[greedy].argmax(axis=1)
        sampled = [i for i, s in enumerate(seqs) if not s.job.params.greedy]
        if sampled:
            temps = np.array([seqs[i].job.params.temperature for i in sampled])
            top_ps = np.array([seqs[i].job.params.top_p for i in sampled])
            us = np.array([seqs[i].rng.random() for i in sampled])
            chosen[sampled] = sample_rows(logits[sampled], temps, top_ps, us)

        for i, seq in enumerate(seqs):
            g = seq.grammar
            if g is not None and not g.allows(int(chosen[i])):
                chosen[i] = self._resample_with_grammar(seq, g, logits[i])
            if seq.logprobs is not None and chosen[i] >= 0:
                self._record_logprob(seq, int(chosen[i]), logprob_rows[i])
        return chosen.tolist()

    def _resample_with_grammar(self, seq: _Sequence, g: GrammarFilter, row: np.ndarray) -> int:
        masked = g.mask(row)
        if not np.isfinite(masked).any():
            return -1  # the grammar allows nothing: end this completion
        p = seq.job.params
        if p.greedy:
            return int(masked.argmax())
        return int(sample_rows(masked[None, :], np.array([p.temperature]), np.array([p.top_p]), np.array([seq.rng.random()]))[0])

    def _record_logprob(self, seq: _Sequence, token: int, row: np.ndarray) -> None:
        pieces = self.model.pieces
        top = []
        k = seq.job.params.top_logprobs
        if k > 0:
            top = [(pieces[t].decode("utf-8", "replace"), float(row[t])) for t in top_k_indices(row, k)]
        assert seq.logprobs is not None
        seq.logprobs.append(TokenLogprob(pieces[token].decode("utf-8", "replace"), float(row[token]), top))

    def _advance(self, seq: _Sequence, token: int) -> None:
        """Take a sampled token: end the sequence (EOS, stop string, length) or queue it to decode."""
        if token < 0:  # the grammar allows no token at all
            self._finish(seq, "stop", flush=True)
            return
        if self.model.is_eog[token] and not seq.job.ignore_eos:
            if seq.logprobs:
                seq.logprobs.pop()  # the end token is not part of the completion
            self._finish(seq, "stop", flush=True)
            return
        job = seq.job
        seq.n_generated += 1
        self.stats.generated_tokens += 1
        seq.offsets.append(len(seq.text))
        seq.text += seq.decoder.decode(self.model.pieces[token])
        if seq.grammar is not None:
            seq.grammar.accept(token)
        if job.stop and self._cut_at_stop(seq):
            self._finish(seq, "stop", flush=False)
            return
        if seq.n_generated >= job.budget:
            self._finish(seq, "length", flush=True)
            return
        seq.last = token
        seq.context.append(token)
        if job.on_delta is not None:
            # hold back what could still turn out to be the start of a stop string
            self._stream(seq, len(seq.text) - max((len(s) for s in job.stop), default=1) + 1)

    @staticmethod
    def _cut_at_stop(seq: _Sequence) -> bool:
        """Truncate the text before the earliest stop string; stops may span several tokens."""
        start_of_new = seq.offsets[-1]
        best = -1
        for stop in seq.job.stop:
            at = seq.text.find(stop, max(0, start_of_new - len(stop) + 1))
            if at >= 0 and (best < 0 or at < best):
                best = at
        if best < 0:
            return False
        seq.text = seq.text[:best]
        if seq.logprobs is not None:
            # keep the tokens that begin before the cut (a token straddling it is partly kept)
            keep = sum(1 for off in seq.offsets if off < best)
            del seq.logprobs[keep:]
        return True

    @staticmethod
    def _stream(seq: _Sequence, upto: int) -> None:
        assert seq.job.on_delta is not None
        if upto > seq.streamed:
            seq.job.on_delta(seq.index, seq.text[seq.streamed : upto])
            seq.streamed = upto

    def _finish(self, seq: _Sequence, reason: str, flush: bool) -> None:
        if flush:
            seq.text += seq.decoder.decode(b"", final=True)
        seq.finish_reason = reason
        if seq.job.on_delta is not None:
            self._stream(seq, len(seq.text))
        if seq in self._generating:
            self._generating.remove(seq)
        job = seq.job
        # release the slot now so a waiting job can start on the next step
        self._release(seq)
        self._reserved_cells -= job.budget
        job.reserved_cells -= job.budget
        job.n_finished += 1
        if job.n_finished == job.n:
            self._reserved_cells -= job.reserved_cells
            job.reserved_cells = 0
            self.stats.jobs_completed += 1
            job.callback(self._response(job))

    @staticmethod
    def _response(job: GenerationJob) -> ChatResponse:
        choices = [Choice(s.text, s.finish_reason or "stop", s.logprobs) for s in job.seqs]
        usage = Usage(prompt_tokens=len(job.prompt), completion_tokens=sum(s.n_generated for s in job.seqs))
        return ChatResponse(choices=choices, usage=usage, model=job.model_name)
