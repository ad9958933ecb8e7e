"""CLI commands of the trust audit: `audit`, `plant-canaries`, `redact-pii` (mounted by synthloom.cli).

`synthloom audit` exits 0 when every check passed (or could not be measured), 4 when any failed,
2 on bad input, so CI can gate on it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Optional

import typer

from synthloom.errors import BadInputError

AUDIT_FAILED_EXIT = 4


def _dataset_path(path: Path) -> tuple[Path, Path | None]:
    """(rows file, run directory or None): a run directory audits its data/train file."""
    if path.is_dir():
        for name in ("train.jsonl", "train.parquet"):
            if (path / "data" / name).exists():
                return path / "data" / name, path
        raise BadInputError(f"{path} is a directory without data/train.jsonl or data/train.parquet")
    if not path.exists():
        raise BadInputError(f"{path} does not exist")
    return path, None


def _texts(path: Path, column: str) -> list[str]:
    from synthloom.quality.commands import _load

    return _load(path, column)[1]


def _canaries(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BadInputError(f"cannot read canaries {path}: {e.strerror or e}") from None
    items = json.loads(text) if text.lstrip().startswith("[") else text.splitlines()
    out = [str(x).strip() for x in items if str(x).strip()]
    if not out:
        raise BadInputError(f"{path} holds no canaries (one per line, or a JSON list)")
    return out


async def _counterfactual(spec: str, prompts: list[str], limits: Any, seed: int, cache: Path | None) -> dict[str, Any]:
    from synthloom.audit.counterfactual import counterfactual_check
    from synthloom.audit.embedcache import CachedEmbedder
    from synthloom.llm.spec import load_model

    model = load_model(spec)
    try:
        return await counterfactual_check(prompts, model, CachedEmbedder(path=cache), limits=limits.bias, seed=seed)
    finally:
        await model.aclose()


def _print_checks(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="synthloom audit", show_lines=False)
    for col in ("area", "check", "value", "limit", "status"):
        table.add_column(col)
    style = {"passed": "green", "failed": "bold red", "unknown": "yellow"}
    for c in result["checks"]:
        value = "-" if c["value"] is None else f"{c['value']:.4g}"
        limit = f"{'>=' if c['direction'] == 'min' else '<='} {c['limit']:g}"
        table.add_row(c["area"], c["name"], value, limit, f"[{style[c['status']]}]{c['status']}[/]")
    Console(stderr=True).print(table)


def register(app: typer.Typer) -> None:
    """Add the `audit`, `plant-canaries` and `redact-pii` commands to a Typer app."""
    from synthloom.quality.commands import _one_line_errors

    @app.command()
    @_one_line_errors
    def audit(
        file: Path = typer.Argument(..., help="synthetic rows (JSONL / Parquet / CSV) or a run directory"),
        column: str = typer.Option("text", "--column", "-c", help="text column of FILE"),
        reference: Optional[Path] = typer.Option(None, "--reference", "-r", help="real data to compare with (fidelity)"),
        reference_column: Optional[str] = typer.Option(None, help="text column of --reference (default: --column)"),
        private_seeds: Optional[Path] = typer.Option(None, "--private-seeds", help="private seed rows that must not leak"),
        seed_column: Optional[str] = typer.Option(None, help="text column of --private-seeds (default: --column)"),
        canaries: Optional[Path] = typer.Option(None, help="planted secrets, one per line: fail if they surface"),
        bias: bool = typer.Option(True, "--bias/--no-bias", help="demographic representation and associations"),
        pii: bool = typer.Option(True, "--pii/--no-pii", help="count PII entities in FILE"),
        mauve: bool = typer.Option(True, "--mauve/--no-mauve", help="compute MAUVE (needs --reference)"),
        prompt_column: Optional[str] = typer.Option(None, help="counterfactual check: ask --model these prompts "
                                                    "with group terms swapped and compare the answers"),
        model: str = typer.Option("embedded", "--model", "-m", help="model under test for the counterfactual check"),
        threshold: list[str] = typer.Option([], "--threshold", "-t", help="override a limit, e.g. mauve_min=0.6"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="audit JSON (default FILE.audit.json, "
                                           "or RUN/audit.json for a run directory)"),
        cache: Optional[Path] = typer.Option(None, help="embedding cache (default ~/.cache/synthloom/embeddings.sqlite)"),
        sample: Optional[int] = typer.Option(None, help="fidelity on at most N rows a side (leakage, PII, bias see all)"),
        precision: str = typer.Option("int8", "--embeddings", help="int8 (quantised MiniLM, ~2.5x faster) or fp32"),
        seed: int = typer.Option(0),
    ) -> None:
        """Trust audit: fidelity to --reference, leakage of --private-seeds and --canaries, PII, bias.

        Exit code 0 when no check failed, 4 when any did."""
        from synthloom.audit.embedcache import CachedEmbedder
        from synthloom.audit.runner import AUDIT_FILE, AuditLimits, add_part, run_audit, write_audit
        from synthloom.options import parse_pairs

        data_path, run_dir = _dataset_path(file)
        limits = AuditLimits.from_pairs(parse_pairs(threshold, "--threshold"))
        texts = _texts(data_path, column)
        ref = _texts(reference, reference_column or column) if reference else None
        seeds = _texts(private_seeds, seed_column or column) if private_seeds else None
        result = run_audit(texts, reference=ref, private_seeds=seeds, canaries=_canaries(canaries) if canaries else None,
                           bias=bias, pii=pii, limits=limits, embedder=CachedEmbedder(path=cache, precision=precision), seed=seed,
                           use_mauve=mauve, sample=sample)
        if prompt_column:
            result = add_part(result, "counterfactual", "bias",
                              asyncio.run(_counterfactual(model, _texts(data_path, prompt_column), limits, seed, cache)))
        result["inputs"] = {"dataset": str(data_path), "column": column, "reference": str(reference) if reference else None,
                            "private_seeds": str(private_seeds) if private_seeds else None}
        target = out or (run_dir / AUDIT_FILE if run_dir else file.with_name(f"{file.stem}.audit.json"))
        write_audit(result, target)
        if run_dir is not None:
            from synthloom.audit.card import refresh_run_outputs

            refresh_run_outputs(run_dir, result)
        _print_checks(result)
        typer.echo(json.dumps({"passed": result["passed"], "failed": result["failed"], "rows": result["rows"],
                               "seconds": result["seconds"], "report": str(target)}))
        if not result["passed"]:
            raise typer.Exit(AUDIT_FAILED_EXIT)

    @app.command("plant-canaries")
    @_one_line_errors
    def plant_canaries_cmd(
        file: Path = typer.Argument(..., help="private seed rows (JSONL / Parquet / CSV)"),
        column: str = typer.Option("text", "--column", "-c", help="text column to plant secrets in"),
        count: int = typer.Option(5, "--count", "-n", help="canaries to plant (one row each, spread evenly)"),
        seed: int = typer.Option(0),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="seeds with canaries (default FILE.canaries.jsonl)"),
    ) -> None:
        """Plant unique secrets in seed rows; run a recipe on the output, then `audit --canaries FILE.canaries.txt`."""
        from synthloom.audit.canary import plant_canaries
        from synthloom.quality.commands import _default_out, _load, _write_rows

        if count < 1:
            raise BadInputError("--count must be at least 1")
        rows, _ = _load(file, column)
        planted, secrets = plant_canaries(rows, column, count, seed)
        target = out or _default_out(file, "canaries")
        _write_rows(planted, target)
        secrets_path = target.with_suffix(".txt")
        secrets_path.write_text("\n".join(secrets) + "\n", encoding="utf-8")
        typer.echo(json.dumps({"rows": len(rows), "canaries": len(secrets), "output": str(target),
                               "canaries_file": str(secrets_path)}))

    @app.command("redact-pii")
    @_one_line_errors
    def redact_pii(
        file: Path = typer.Argument(..., help="input JSONL / Parquet / CSV"),
        column: list[str] = typer.Option(["text"], "--column", "-c", help="text column(s) to redact"),
        entities: list[str] = typer.Option([], "--entity", "-e", help="entity types (default: all offline ones)"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="redacted rows (default FILE.redacted.jsonl)"),
    ) -> None:
        """Replace PII (e-mail, phone, card, IBAN, IP, SSN, ...) with <ENTITY_TYPE>; prints counts by type."""
        from synthloom.audit.pii import PiiRedactor
        from synthloom.audit.steps import redact_rows
        from synthloom.quality.commands import _default_out, _load, _write_rows

        rows, _ = _load(file, column[0])
        missing = [c for c in column[1:] if any(c not in r for r in rows)]
        if missing:
            raise BadInputError(f"{file}: column(s) {', '.join(missing)} missing in some rows")
        redacted, counts = redact_rows(rows, column, PiiRedactor(entities or None))
        target = out or _default_out(file, "redacted")
        _write_rows(redacted, target)
        typer.echo(json.dumps({"rows": len(rows), "rows_with_pii": sum(1 for r in redacted if r.get("pii_found")),
                               "by_type": counts, "output": str(target)}))
