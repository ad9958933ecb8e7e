"""Thin, typed wrapper over llama-cpp-python's low-level C API: load a GGUF, tokenize, detokenize,
build batches from numpy arrays, and make grammar samplers.

Everything here is used from the engine thread, except tokenize/metadata which only read the vocab.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthloom.errors import ConfigError
from synthloom.llm.base import InvalidRequestError

log = logging.getLogger("synthloom.llm.embedded")

# llama.cpp's CPU backend runs on OpenMP, whose idle threads spin (300k iterations by default)
# at every barrier of every decode. Beside another busy process the spinning thread burns the
# time slice its partner needs, and throughput collapses (issue 18: 4.8 tok/s at load 7 on 2
# cores vs ~100 idle). Passive waits sleep instead. libgomp reads the policy once, when it is
# loaded by `import llama_cpp`, so it is set just for that import; an explicit
# OMP_WAIT_POLICY or GOMP_SPINCOUNT in the environment wins.
_SET_WAIT = "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ
if _SET_WAIT:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
try:
    import llama_cpp
except ImportError as e:  # pragma: no cover - the package is a hard dependency
    raise ConfigError(f"the embedded backend needs llama-cpp-python ({e}); pip install llama-cpp-python") from None
finally:
    if _SET_WAIT:  # child processes and other OpenMP libraries keep their own defaults
        del os.environ["OMP_WAIT_POLICY"]

_GGUF_MAGIC = b"GGUF"
# ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continuation. Info is chatty: log it as debug.
_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}


@llama_cpp.llama_log_callback
def _route_llama_log(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    # llama.cpp chatters on stderr by default; send it to logging at debug/warning level instead.
    lvl = _LEVELS.get(level, logging.DEBUG)
    if log.isEnabledFor(lvl):
        log.log(lvl, "%s", text.decode("utf-8", "replace").rstrip())


_backend_ready = False


def _init_backend() -> None:
    global _backend_ready
    if not _backend_ready:
        llama_cpp.llama_log_set(_route_llama_log, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _backend_ready = True


def check_gguf(path: str) -> None:
    """Fail with one clear line unless `path` is a readable GGUF file."""
    if not os.path.exists(path):
        raise ConfigError(f"GGUF model file not found: {path}; pass an existing .gguf path")
    if os.path.isdir(path):
        raise ConfigError(f"{path} is a directory; pass the .gguf file inside it")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ConfigError(f"cannot read GGUF model file {path}: {e.strerror}") from None
    if magic != _GGUF_MAGIC:
        raise ConfigError(f"{path} is not a GGUF model file (bad magic bytes); pass a .gguf file")


@dataclass(frozen=True, slots=True)
class ContextOptions:
    n_ctx: int
    n_slots: int
    n_threads: int
    n_batch: int
    # False: every slot has its own KV stream of n_ctx // n_slots cells, which makes a sequence's
    # logits bitwise independent of the other sequences in the batch (see docs/embedded.md).
    # True: one pool of n_ctx cells shared by all slots (more capacity, not batch invariant).
    kv_unified: bool = False

    @property
    def cells_per_slot(self) -> int:
        return self.n_ctx if self.kv_unified else self.n_ctx // self.n_slots


class LlamaModelFile:
    """A loaded GGUF model: vocabulary, metadata and token pieces. Safe to share read-only."""

    def __init__(self, path: str) -> None:
        check_gguf(path)
        _init_backend()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        params.use_mmap = True
        self.path = path
        self.ptr = llama_cpp.llama_model_load_from_file(path.encode(), params)
        if not self.ptr:
            raise ConfigError(f"llama.cpp could not load {path}; the GGUF is corrupt or of an unsupported architecture")
        self.vocab = llama_cpp.llama_model_get_vocab(self.ptr)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(self.ptr))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.pieces = [self._piece(t) for t in range(self.n_vocab)]
        # the most bytes one token stands for (control tokens have no plain piece: count their
        # text, since a prompt may spell them): bounds a text's token count from its length
        self.max_token_bytes = max(
            [len(p) for p in self.pieces] + [len(self._piece(t, special=True)) for t, p in enumerate(self.pieces) if not p]
        )
        self.eog_ids = np.array(
            [t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)], dtype=np.int64
        )
        self.is_eog = np.zeros(self.n_vocab, dtype=bool)
        self.is_eog[self.eog_ids] = True

    def _piece(self, token: int, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def special_text(self, token: int) -> str:
        return self._piece(token, special=True).decode("utf-8", "replace") if token >= 0 else ""

    def meta(self, key: str) -> str | None:
        size = 1 << 16
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", "replace")
            size = n + 1

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, True)
        if n < 0:
            cap = -n
            buf = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, True)
        return list(buf[:n])

    def new_context(self, opts: ContextOptions) -> Any:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = opts.n_ctx
        params.n_batch = opts.n_batch
        params.n_ubatch = opts.n_batch
        params.n_seq_max = opts.n_slots
        params.n_threads = opts.n_threads
        params.n_threads_batch = opts.n_threads
        params.no_perf = True
        params.kv_unified = opts.kv_unified
        ctx = llama_cpp.llama_init_from_model(self.ptr, params)
        if not ctx:
            raise ConfigError(
                f"llama.cpp could not create a context with n_ctx={opts.n_ctx}, n_slots={opts.n_slots}; "
                "lower n_ctx or n_slots"
            )
        return ctx

    def grammar_sampler(self, gbnf: str) -> Any:
        smpl = llama_cpp.llama_sampler_init_grammar(self.vocab, gbnf.encode("utf-8"), b"root")
        if not smpl:
            raise InvalidRequestError("the JSON schema produced a grammar llama.cpp rejects; simplify the schema")
        return smpl

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_model_free(self.ptr)
            self.ptr = None


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """GBNF grammar for a JSON schema (llama-cpp-python's converter), or a clear one-line error."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as e:  # noqa: BLE001 - the converter raises many kinds on bad schemas
        raise InvalidRequestError(f"cannot turn the JSON schema into a grammar: {e}") from None


_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


class GrammarFilter:
    """Applies a llama.cpp grammar sampler to numpy logits: cheap single-token checks, full masks."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        self._one = np.zeros(1, dtype=_TOKEN_DATA)

    def _apply(self, cand: np.ndarray) -> None:
        arr = llama_cpp.llama_token_data_array(
            data=cand.ctypes.data_as(llama_cpp.llama_token_data_p), size=len(cand), selected=-1, sorted=False
        )
        llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(arr))

    def allows(self, token: int) -> bool:
        self._one["id"] = token
        self._one["logit"] = 0.0
        self._apply(self._one)
        return bool(np.isfinite(self._one["logit"][0]))

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """A copy of `logits` with every token the grammar forbids set to -inf."""
        cand = np.empty(logits.shape[0], dtype=_TOKEN_DATA)
        cand["id"] = np.arange(logits.shape[0], dtype=np.int32)
        cand["logit"] = logits
        cand["p"] = 0.0
        self._apply(cand)
        return cand["logit"].copy()

    def accept(self, token: int) -> None:
        llama_cpp.llama_sampler_accept(self.sampler, token)

    def close(self) -> None:
        if self.sampler:
            llama_cpp.llama_sampler_free(self.sampler)
            self.sampler = None


class BatchBuffer:
    """A llama_batch whose arrays are numpy arrays we own, so filling it is vectorised.

    Every token belongs to exactly one sequence (n_seq_id = 1); n>1 sharing uses seq_cp instead.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        self._n_seq_id = np.ones(capacity, dtype=np.int32)
        i32p = ctypes.POINTER(ctypes.c_int32)
        base = self.seq.ctypes.data
        self._seq_ptrs = (i32p * capacity)(*[ctypes.cast(base + 4 * i, i32p) for i in range(capacity)])
        self.struct = llama_cpp.llama_batch(
            n_tokens=0,
            token=self.token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token)),
            embd=None,
            pos=self.pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos)),
            n_seq_id=self._n_seq_id.ctypes.data_as(i32p),
            seq_id=ctypes.cast(self._seq_ptrs, ctypes.POINTER(i32p)),
            logits=self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
        )
        self.n = 0

    def clear(self) -> None:
        self.n = 0

    def add(self, tokens: np.ndarray | list[int], start_pos: int, seq_id: int, logits_from: int | None) -> int:
        """Append tokens of one sequence; tokens[logits_from:] get output logits (None: none).
        Returns how many logits rows these tokens add."""
        k = len(tokens)
        s = slice(self.n, self.n + k)
        self.token[s] = tokens
        self.pos[s] = np.arange(start_pos, start_pos + k, dtype=np.int32)
        self.seq[s] = seq_id
        self.logits[s] = 0
        rows = 0
        if logits_from is not None and logits_from < k:
            self.logits[self.n + logits_from : self.n + k] = 1
            rows = k - logits_from
        self.n += k
        return rows

    def decode(self, ctx: Any) -> int:
        self.struct.n_tokens = self.n
        return int(llama_cpp.llama_decode(ctx, self.struct))


def logits_view(ctx: Any, n_rows: int, n_vocab: int) -> np.ndarray:
    """The last decode's output logits as an (n_rows, n_vocab) numpy view (no copy)."""
    ptr = llama_cpp.llama_get_logits(ctx)
    return np.ctypeslib.as_array(ptr, shape=(n_rows, n_vocab))


def memory_of(ctx: Any) -> Any:
    return llama_cpp.llama_get_memory(ctx)


def seq_remove(mem: Any, seq_id: int, from_pos: int = 0) -> bool:
    """Drop a sequence's cells at positions >= from_pos; False if the model's memory cannot cut
    a sequence part-way (recurrent models), in which case nothing was removed."""
    return bool(llama_cpp.llama_memory_seq_rm(mem, seq_id, from_pos if from_pos > 0 else -1, -1))


def seq_copy(mem: Any, src: int, dst: int) -> None:
    llama_cpp.llama_memory_seq_cp(mem, src, dst, -1, -1)


def free_context(ctx: Any) -> None:
    llama_cpp.llama_free(ctx)
