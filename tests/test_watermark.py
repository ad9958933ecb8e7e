"""Green-list watermark: scheme, processor, detector, CLI and the real embedded model end to end."""

from __future__ import annotations

import asyncio
import json
import random
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from synthloom.errors import ConfigError
from synthloom.watermark import (
    Detector,
    GreenListProcessor,
    WatermarkScheme,
    key_id,
    z_threshold,
)

KEY = b"unit-test-secret-key"
V = 49152


@pytest.fixture(scope="module")
def scheme() -> WatermarkScheme:
    return WatermarkScheme(key=KEY, n_vocab=V)


def green_walk(scheme: WatermarkScheme, n: int, rng: random.Random, p_green: float = 1.0) -> list[int]:
    """A token sequence whose every token is green for its context with probability p_green."""
    toks = [rng.randrange(V)]
    for _ in range(n - 1):
        mask = scheme.green_mask(toks)
        pool = np.flatnonzero(mask if rng.random() < p_green else ~mask)
        toks.append(int(pool[rng.randrange(len(pool))]))
    return toks


def test_green_list_is_a_gamma_fraction_that_depends_on_key_and_context(scheme: WatermarkScheme) -> None:
    a, b = scheme.green_mask([17]), scheme.green_mask([18])
    assert abs(a.mean() - 0.25) < 0.01
    assert abs((a & b).mean() - 0.25**2) < 0.01  # different contexts: near-independent lists
    assert np.array_equal(a, WatermarkScheme(key=KEY, n_vocab=V).green_mask([5, 17]))  # deterministic, width 1
    assert not np.array_equal(a, WatermarkScheme(key=b"other", n_vocab=V).green_mask([17]))
    wide = WatermarkScheme(key=KEY, n_vocab=V, context_width=2)
    assert not np.array_equal(wide.green_mask([5, 17]), wide.green_mask([6, 17]))
    flags = scheme.green_flags([(17,), (18,), (17,)], [3, 3, 4])
    assert flags.tolist() == [bool(a[3]), bool(b[3]), bool(a[4])]
    assert scheme.is_green([17], 3) == bool(a[3])


def test_scheme_rejects_bad_parameters() -> None:
    for bad in ({"gamma": 0.0}, {"gamma": 1.0}, {"delta": -1.0}, {"context_width": 0}):
        with pytest.raises(ConfigError):
            WatermarkScheme(key=KEY, n_vocab=V, **bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        WatermarkScheme(key=b"", n_vocab=V)


def test_key_id_and_repr_never_contain_the_key(scheme: WatermarkScheme) -> None:
    assert re.fullmatch(r"[0-9a-f]{8}", key_id(KEY))
    assert KEY.decode() not in repr(scheme) and KEY.decode() not in json.dumps(scheme.describe())
    assert scheme.describe()["key_id"] == key_id(KEY)


def test_processor_adds_delta_to_exactly_the_green_logits(scheme: WatermarkScheme) -> None:
    proc = GreenListProcessor(scheme)
    row = np.linspace(-3, 3, V, dtype=np.float32)
    before = row.copy()
    proc([1, 2, 99], row)
    mask = scheme.green_mask([99])
    assert np.allclose(row[mask] - before[mask], 2.0) and np.array_equal(row[~mask], before[~mask])
    proc([7, 99], row)  # same previous token: served from the cache, same list
    assert proc.hits == 1 and proc.misses == 1
    assert np.allclose(row[mask] - before[mask], 4.0)
    with pytest.raises(ValueError):
        proc([1], np.zeros(V - 1, dtype=np.float32))


def test_z_threshold_is_the_normal_quantile() -> None:
    assert z_threshold(0.01) == pytest.approx(2.3263, abs=1e-4)
    assert z_threshold(0.001) == pytest.approx(3.0902, abs=1e-4)
    with pytest.raises(ConfigError):
        z_threshold(0.0)


def test_detector_separates_green_text_from_random_text(scheme: WatermarkScheme) -> None:
    det = Detector(scheme, tokenize=lambda s: [], fpr=0.01)
    rng = random.Random(0)
    marked = det.score_tokens(green_walk(scheme, 60, rng, p_green=0.7))
    assert marked.watermarked and marked.z is not None and marked.z > 4
    # null: 400 random texts of 100 tokens; the test is calibrated so ~1% are flagged
    flagged = sum(bool(det.score_tokens([rng.randrange(V) for _ in range(100)]).watermarked) for _ in range(400))
    assert flagged <= 12


def test_short_texts_get_no_verdict_and_repeats_count_once(scheme: WatermarkScheme) -> None:
    det = Detector(scheme, tokenize=lambda s: [], min_tokens=25)
    short = det.score_tokens(green_walk(scheme, 20, random.Random(1)))
    assert short.watermarked is None and short.z is not None and short.z > 4  # z reported, no verdict
    assert det.score_tokens([5]).z is None
    g = int(np.flatnonzero(scheme.green_mask([7]))[0])
    loop = [7, g] * 100  # a repeated green bigram must not look like 199 green tokens
    d = det.score_tokens(loop)
    assert d.scored == 2 and d.watermarked is None


# ---- real tokenizer / CLI ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    from synthloom.watermark.detector import gguf_tokenizer

    return gguf_tokenizer()


def test_cli_detect_checks_the_key_id_and_reports_rows(tmp_path, monkeypatch, tokenizer) -> None:  # type: ignore[no-untyped-def]
    import typer

    from synthloom.watermark import commands

    monkeypatch.setattr(commands, "gguf_tokenizer", lambda path=None: tokenizer)
    monkeypatch.setenv("WM_TEST_KEY", KEY.decode())
    rng = random.Random(3)
    words = [rng.choice(["apple", "river", "stone", "music", "paper", "cloud", "green", "quiet"]) for _ in range(150)]
    rows = [{"text": " ".join(words)}, {"text": "Too short."}]  # plain text, and a text too short to judge
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    app = typer.Typer()
    commands.register(app)
    app.command("noop")(lambda: None)  # a second command so typer keeps `detect` as a subcommand
    runner = CliRunner()
    bad = runner.invoke(app, ["detect", str(data), "--key-env", "WM_TEST_KEY", "--key-id", "00000000"])
    assert bad.exit_code == 2 and "key id" in bad.output and KEY.decode() not in bad.output
    out = tmp_path / "det.jsonl"
    res = runner.invoke(app, ["detect", str(data), "--key-env", "WM_TEST_KEY", "--key-id", key_id(KEY), "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["rows"] == 2 and summary["no_verdict"] == 1 and summary["key_id"] == key_id(KEY)
    assert summary["not_watermarked"] == 1  # unwatermarked words
    per_row = [json.loads(line) for line in out.read_text().splitlines()]
    assert per_row[1]["watermarked"] is None and KEY.decode() not in out.read_text()
    missing = runner.invoke(app, ["detect", str(data), "--key-env", "WM_TEST_KEY", "--key-id", key_id(KEY), "--column", "x"])
    assert missing.exit_code == 2 and "column" in missing.output


def test_embedded_model_rejects_a_missing_key_env(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from synthloom.llm.embedded import EmbeddedModel

    monkeypatch.delenv("WM_ABSENT_KEY", raising=False)
    with pytest.raises(ConfigError, match="WM_ABSENT_KEY"):
        EmbeddedModel(watermark_key_env="WM_ABSENT_KEY", n_threads=1, n_slots=2, n_ctx=1024)


# ---- end to end with the real embedded model ----------------------------------------------------


def substitute_words(text: str, fraction: float, rng: random.Random) -> str:
    """Replace `fraction` of the words with common English words (a light human edit)."""
    vocab = ["the", "house", "quickly", "blue", "people", "because", "water", "strange", "often", "small"]
    words = text.split(" ")
    for i in rng.sample(range(len(words)), round(fraction * len(words))):
        words[i] = rng.choice(vocab)
    return " ".join(words)


@pytest.mark.slow
def test_real_model_watermark_is_detected_and_plain_text_is_not(monkeypatch, tokenizer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from synthloom.llm.base import ChatRequest
    from synthloom.llm.embedded import EmbeddedModel

    monkeypatch.setenv("WM_E2E_KEY", KEY.decode())
    topics = ["the sea", "bread", "a robot", "winter", "the moon", "a library", "trains", "volcanoes"]
    reqs = [
        ChatRequest(messages=[{"role": "user", "content": f"Write an essay about {t}."}], seed=i, max_tokens=100)
        for i, t in enumerate(topics)
    ]

    async def generate(**opts: object) -> tuple[list[str], str]:
        m = EmbeddedModel(n_slots=8, n_ctx=4096, n_threads=1, ignore_eos=True, **opts)  # type: ignore[arg-type]
        try:
            return [r.text for r in await m.chat(reqs)], m.identity
        finally:
            await m.aclose()

    marked, wm_identity = asyncio.run(generate(watermark_key_env="WM_E2E_KEY"))
    plain, plain_identity = asyncio.run(generate())
    assert wm_identity.startswith(plain_identity + "+wm:" + key_id(KEY)) and KEY.decode() not in wm_identity
    tok, n_vocab = tokenizer
    det = Detector(WatermarkScheme(key=KEY, n_vocab=n_vocab), tok, fpr=0.01)
    z_marked = [det.score(t).z for t in marked]
    z_plain = [det.score(t).z for t in plain]
    # 100-token texts (~75 scored after de-duplication): measured z is 4.5-9 marked, |z| < 2.3 plain
    assert sum(z >= 4 for z in z_marked) >= 7, z_marked
    assert all(z < det.threshold for z in z_plain), z_plain
    assert marked != plain
    edited = [det.score(substitute_words(t, 0.10, random.Random(i))) for i, t in enumerate(marked)]
    assert sum(bool(d.watermarked) for d in edited) >= 7, [d.z for d in edited]
