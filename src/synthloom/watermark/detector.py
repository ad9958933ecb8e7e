"""Detect the green-list watermark: a one-sided z-test on the count of green tokens in a text.

Under the null hypothesis (the text was not generated with this key) every scored token is green
with probability gamma independently, so z = (green - gamma*T) / sqrt(T*gamma*(1-gamma)) is
approximately standard normal; a text is called watermarked when z reaches the normal quantile of
the chosen false-positive rate. Repeated (context, token) pairs are scored once (Kirchenbauer et
al. 2023b): repetitive text would otherwise break the independence the test relies on. Below
`min_tokens` scored tokens no verdict is given, since the normal approximation and the power of the
test both fail on short texts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from synthloom.errors import ConfigError
from synthloom.llm.watermark_scheme import WatermarkScheme

Tokenize = Callable[[str], Sequence[int]]

DEFAULT_FPR = 0.01
DEFAULT_MIN_TOKENS = 25


def z_threshold(fpr: float) -> float:
    """The z-score above which a one-sided test has false-positive rate `fpr`."""
    if not 0.0 < fpr < 0.5:
        raise ConfigError(f"false-positive rate must be in (0, 0.5), got {fpr}")
    return NormalDist().inv_cdf(1.0 - fpr)


@dataclass(frozen=True)
class Detection:
    tokens: int  # tokens in the text
    scored: int  # distinct (context, token) pairs scored
    green: int
    z: float | None  # None when nothing could be scored
    p_value: float | None
    watermarked: bool | None  # None = no verdict (too short)
    key_id: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.z is not None:
            d["z"] = round(self.z, 4)
        return d


class Detector:
    """Scores texts for one scheme with the generator's tokenizer (see `gguf_tokenizer`)."""

    def __init__(
        self,
        scheme: WatermarkScheme,
        tokenize: Tokenize,
        fpr: float = DEFAULT_FPR,
        min_tokens: int = DEFAULT_MIN_TOKENS,
        ignore_repeated: bool = True,
    ) -> None:
        if min_tokens < 1:
            raise ConfigError(f"min_tokens must be >= 1, got {min_tokens}")
        self.scheme = scheme
        self.tokenize = tokenize
        self.fpr = fpr
        self.threshold = z_threshold(fpr)
        self.min_tokens = min_tokens
        self.ignore_repeated = ignore_repeated

    def score_tokens(self, tokens: Sequence[int]) -> Detection:
        w = self.scheme.context_width
        contexts: list[tuple[int, ...]] = []
        targets: list[int] = []
        seen: set[tuple[int, ...]] = set()
        for i in range(w, len(tokens)):
            ctx = tuple(int(t) for t in tokens[i - w:i])
            tok = int(tokens[i])
            if not 0 <= tok < self.scheme.n_vocab:
                raise ConfigError(f"token id {tok} is outside the watermark's vocabulary of {self.scheme.n_vocab}")
            if self.ignore_repeated:
                pair = ctx + (tok,)
                if pair in seen:
                    continue
                seen.add(pair)
            contexts.append(ctx)
            targets.append(tok)
        T = len(targets)
        green = int(self.scheme.green_flags(contexts, targets).sum())
        kid = self.scheme.key_id
        if T == 0:
            return Detection(len(tokens), 0, 0, None, None, None, kid)
        g = self.scheme.gamma
        z = (green - g * T) / math.sqrt(T * g * (1.0 - g))
        p = 1.0 - NormalDist().cdf(z)
        verdict = None if T < self.min_tokens else z >= self.threshold
        return Detection(len(tokens), T, green, z, p, verdict, kid)

    def score(self, text: str) -> Detection:
        return self.score_tokens(self.tokenize(text))


def gguf_tokenizer(model_path: str | None = None) -> tuple[Tokenize, int]:
    """(tokenize, n_vocab) of a GGUF model (the bundled SmolLM2 by default), without special tokens,
    i.e. the way the engine's generated text was tokenized."""
    from synthloom.llm.embedded_files import default_model_path
    from synthloom.llm.embedded_llama import LlamaModelFile

    file = LlamaModelFile(model_path or default_model_path())

    def tokenize(text: str) -> list[int]:
        return file.tokenize(text, add_special=False)

    tokenize.model_file = file  # type: ignore[attr-defined]  # keeps the model alive with the function
    return tokenize, file.n_vocab
