"""`synthloom detect FILE --key-id ID`: score every row of a dataset for the watermark.

Prints a one-line JSON summary; `--out` writes one JSON line per row (index, z, verdict...). The
key is read from an environment variable and checked against the expected key id, so a wrong key
fails loudly instead of silently reporting "not watermarked". Mounted by `register(app)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from synthloom.errors import BadInputError, SynthloomError
from synthloom.watermark.detector import (
    DEFAULT_FPR,
    DEFAULT_MIN_TOKENS,
    Detector,
    Tokenize,
    gguf_tokenizer,
)
from synthloom.llm.watermark_scheme import (
    DEFAULT_CONTEXT,
    DEFAULT_GAMMA,
    WatermarkScheme,
    key_from_env,
    key_id,
)

DEFAULT_KEY_ENV = "SYNTHLOOM_WM_KEY"


def detect_rows(
    rows: list[dict[str, Any]], column: str, detector: Detector
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-row results and a summary for `rows[i][column]` (rows without text get no verdict)."""
    results: list[dict[str, Any]] = []
    counts = {"watermarked": 0, "not_watermarked": 0, "no_verdict": 0}
    for i, row in enumerate(rows):
        text = row.get(column)
        if not isinstance(text, str):
            raise BadInputError(f"row {i} has no text in column {column!r} (got {type(text).__name__})")
        d = detector.score(text)
        results.append({"row": i, **d.to_dict()})
        counts["no_verdict" if d.watermarked is None else "watermarked" if d.watermarked else "not_watermarked"] += 1
    summary = {
        "rows": len(rows), **counts, "key_id": detector.scheme.key_id, "gamma": detector.scheme.gamma,
        "context_width": detector.scheme.context_width, "fpr": detector.fpr,
        "z_threshold": round(detector.threshold, 4), "min_tokens": detector.min_tokens,
    }
    return results, summary


def load_detector(
    key_env: str, expected_key_id: str, gamma: float = DEFAULT_GAMMA, context_width: int = DEFAULT_CONTEXT,
    fpr: float = DEFAULT_FPR, min_tokens: int = DEFAULT_MIN_TOKENS, model_path: str | None = None,
    tokenize: tuple[Tokenize, int] | None = None,
) -> Detector:
    key = key_from_env(key_env)
    actual = key_id(key)
    if actual != expected_key_id.lower():
        raise BadInputError(f"the key in ${key_env} has key id {actual}, not {expected_key_id}; export the matching key")
    tok, n_vocab = tokenize or gguf_tokenizer(model_path)
    scheme = WatermarkScheme(key=key, n_vocab=n_vocab, gamma=gamma, context_width=context_width)
    return Detector(scheme, tok, fpr=fpr, min_tokens=min_tokens)


def detect(
    file: Path = typer.Argument(..., help="JSONL, Parquet, CSV or HF dataset directory"),
    key_id_: str = typer.Option(..., "--key-id", help="expected key id (first 8 hex of the key's SHA-256)"),
    key_env: str = typer.Option(DEFAULT_KEY_ENV, "--key-env", help="environment variable holding the secret key"),
    column: str = typer.Option("text", help="column with the generated text"),
    fpr: float = typer.Option(DEFAULT_FPR, help="false-positive rate the detection threshold is set for"),
    min_tokens: int = typer.Option(DEFAULT_MIN_TOKENS, help="no verdict for texts with fewer scored tokens"),
    gamma: float = typer.Option(DEFAULT_GAMMA, help="green fraction used at generation"),
    context_width: int = typer.Option(DEFAULT_CONTEXT, help="previous tokens seeding the green list at generation"),
    model: Optional[str] = typer.Option(None, help="GGUF whose tokenizer generated the text (default: bundled SmolLM2)"),
    out: Optional[Path] = typer.Option(None, help="write one JSON line per row here"),
) -> None:
    """Detect the synthloom watermark in each row of FILE (z-score of green tokens)."""
    from synthloom.io import read_rows, write_jsonl

    try:
        detector = load_detector(key_env, key_id_, gamma, context_width, fpr, min_tokens, model)
        rows = read_rows(file)
        if rows and column not in rows[0]:
            raise BadInputError(f"column {column!r} not in {file}; columns: {', '.join(sorted(rows[0]))}")
        results, summary = detect_rows(rows, column, detector)
        if out is not None:
            write_jsonl(results, out)
    except SynthloomError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    typer.echo(json.dumps(summary))


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
