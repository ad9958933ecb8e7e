"""The green list: which vocabulary ids are "green" after a given context, for a secret key.

For context c (the previous `context_width` tokens) a 32-bit seed s = BLAKE2b(key, c) is drawn;
token v is green iff mix32(r[v] ^ s) < gamma * 2**32, where r[v] is a per-key random word drawn
once for the whole vocabulary. Each step therefore costs a handful of numpy ops over the vocabulary
(no per-step permutation or sort); the expected green fraction is exactly gamma, and under the
null hypothesis (text written without the key) each scored token is green with probability gamma.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from synthloom.errors import ConfigError

# Kirchenbauer et al. 2023 run most experiments with gamma=0.25, delta=2.0 and the previous token
# as context; those are our defaults.
DEFAULT_GAMMA = 0.25
DEFAULT_DELTA = 2.0
DEFAULT_CONTEXT = 1

_M1 = np.uint32(0x7FEB352D)  # "lowbias32" finaliser constants: a good 32-bit avalanche mix
_M2 = np.uint32(0x846CA68B)


def key_id(key: bytes) -> str:
    """A public, stable name for a key (the first 8 hex digits of its SHA-256); never the key."""
    return hashlib.sha256(key).hexdigest()[:8]


def key_from_env(name: str) -> bytes:
    """Read a watermark key from environment variable `name` (the value itself is never logged)."""
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(f"watermark key environment variable {name} is unset or empty; export a secret key in it")
    return value.encode("utf-8")


def mix32(x: np.ndarray) -> np.ndarray:
    """Avalanche mix of uint32 words (vectorised; wraps modulo 2**32 by design)."""
    x = x ^ (x >> np.uint32(16))
    x = x * _M1
    x ^= x >> np.uint32(15)
    x *= _M2
    x ^= x >> np.uint32(16)
    return x


@dataclass(frozen=True)
class WatermarkScheme:
    """A secret key plus the public parameters that detection must reuse (gamma, context width)."""

    key: bytes = field(repr=False)
    n_vocab: int
    gamma: float = DEFAULT_GAMMA
    delta: float = DEFAULT_DELTA
    context_width: int = DEFAULT_CONTEXT
    _words: np.ndarray = field(init=False, repr=False, compare=False)
    _threshold: np.uint32 = field(init=False, repr=False, compare=False)
    _mac_key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            raise ConfigError("watermark key must not be empty")
        if not 0.0 < self.gamma < 1.0:
            raise ConfigError(f"watermark gamma must be in (0, 1), got {self.gamma}")
        if not self.delta >= 0.0:
            raise ConfigError(f"watermark delta must be >= 0, got {self.delta}")
        if isinstance(self.context_width, bool) or not isinstance(self.context_width, int) or self.context_width < 1:
            raise ConfigError(f"watermark context width must be a positive integer, got {self.context_width!r}")
        if self.n_vocab < 2:
            raise ConfigError(f"watermark vocabulary size must be >= 2, got {self.n_vocab}")
        # per-key random word per vocabulary id, drawn once (the only vocabulary-sized state)
        seed = int.from_bytes(hashlib.blake2b(self.key, digest_size=16, person=b"synthloom-wm-v").digest(), "little")
        words = np.random.Generator(np.random.PCG64(seed)).integers(0, 2**32, self.n_vocab, dtype=np.uint32)
        object.__setattr__(self, "_words", words)
        # BLAKE2b keys are at most 64 bytes: hash the user's key (of any length) down to 32
        object.__setattr__(self, "_mac_key", hashlib.blake2b(self.key, digest_size=32, person=b"synthloom-wm-s").digest())
        object.__setattr__(self, "_threshold", np.uint32(min(round(self.gamma * 2**32), 2**32 - 1)))

    @classmethod
    def from_env(cls, env: str, n_vocab: int, **params: float) -> WatermarkScheme:
        return cls(key=key_from_env(env), n_vocab=n_vocab, **params)  # type: ignore[arg-type]

    @property
    def key_id(self) -> str:
        return key_id(self.key)

    def describe(self) -> dict[str, object]:
        """Public parameters to record next to outputs (no key material)."""
        return {"key_id": self.key_id, "gamma": self.gamma, "delta": self.delta, "context_width": self.context_width,
                "scheme": "green-list-v1"}

    def seed(self, context: Sequence[int]) -> np.uint32:
        """The 32-bit seed for the last `context_width` tokens of `context`."""
        ctx = [int(t) for t in context[-self.context_width:]]
        data = struct.pack(f"<{len(ctx)}i", *ctx)
        return np.uint32(int.from_bytes(hashlib.blake2b(data, key=self._mac_key, digest_size=4).digest(), "little"))

    def green_mask(self, context: Sequence[int]) -> np.ndarray:
        """Boolean mask over the vocabulary: True where the token is green after `context`."""
        return mix32(self._words ^ self.seed(context)) < self._threshold

    def is_green(self, context: Sequence[int], token: int) -> bool:
        return bool(mix32(np.array([self._words[token] ^ self.seed(context)], dtype=np.uint32))[0] < self._threshold)

    def green_flags(self, contexts: Sequence[Sequence[int]], tokens: Sequence[int]) -> np.ndarray:
        """is_green for many (context, token) pairs at once (detection)."""
        if not len(tokens):
            return np.zeros(0, dtype=bool)
        seeds = np.array([self.seed(c) for c in contexts], dtype=np.uint32)
        return mix32(self._words[np.asarray(tokens, dtype=np.int64)] ^ seeds) < self._threshold
