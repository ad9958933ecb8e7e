"""`synthloom provenance FILE`: where each row of an exported dataset came from.

Every file synthloom writes carries a machine-readable synthetic-data label: each row's `_meta`
(synthetic, generator, recipe, step, model, parents) and, for Parquet, the schema metadata key
`synthloom`. A file whose labels were stripped is reported as such (exit 1), never silently.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from synthloom.errors import SynthloomError
from synthloom.io import detect_format, read_parquet_label, read_rows
from synthloom.records import META, Row

REQUIRED_ROW_KEYS = ("synthetic", "generator", "recipe")


class LabelsMissingError(SynthloomError):
    """An output file lacks its synthetic-data labels (stripped or never written by synthloom)."""


def row_label_problem(row: Row) -> str | None:
    meta = row.get(META)
    if not isinstance(meta, dict):
        return "no _meta column"
    missing = [k for k in REQUIRED_ROW_KEYS if k not in meta]
    if missing:
        return f"_meta lacks {', '.join(missing)}"
    return None


def inspect_provenance(path: str | Path) -> dict[str, Any]:
    """Per-row origin plus file-level label; raises LabelsMissingError if any label is missing."""
    p = Path(path)
    rows = read_rows(p)
    problems = [(i, why) for i, row in enumerate(rows) if (why := row_label_problem(row))]
    file_label = read_parquet_label(p) if detect_format(p) == "parquet" else None
    if detect_format(p) == "parquet" and file_label is None:
        problems.insert(0, (-1, "Parquet schema metadata has no 'synthloom' label"))
    if problems:
        where, why = problems[0]
        at = "file" if where < 0 else f"row {where}"
        raise LabelsMissingError(f"{p}: synthetic-data labels missing ({at}: {why}; {len(problems)} problem(s)); "
                                 "the file was altered after export or not made by synthloom")
    origins = []
    for row in rows:
        m = row[META]
        origins.append({"id": m.get("id"), "recipe": m.get("recipe"), "step": m.get("step"),
                        "model": m.get("model"), "parents": m.get("parents", []),
                        "synthetic": m.get("synthetic"), "watermark_key_id": m.get("watermark_key_id")})
    return {
        "file": str(p),
        "rows": len(rows),
        "file_label": file_label,
        "recipes": dict(Counter(o["recipe"] for o in origins)),
        "models": dict(Counter(str(o["model"]) for o in origins)),
        "synthetic_rows": sum(1 for o in origins if o["synthetic"]),
        "origins": origins,
    }
