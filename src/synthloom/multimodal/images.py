"""Images in records: PNG files under `run_dir/images/` referenced by a relative path, and
Parquet image columns that `datasets` loads with an `Image` feature.

A row holds an image as a relative path string (e.g. "images/3f2a9c0e11d4b7a2.png"). Parquet
export turns such columns into the struct {bytes: binary, path: string} that `datasets.Image`
uses, and records the feature in the schema's "huggingface" metadata (without that metadata
`datasets` sees a plain struct, not an image).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from synthloom.errors import BadInputError

IMAGES_DIR = "images"
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
HF_METADATA_KEY = b"huggingface"


def save_png(run_dir: str | Path, data: bytes, stem: str = "") -> str:
    """Write PNG bytes under run_dir/images/ (content-addressed, so a resumed run rewrites nothing).

    Returns the path relative to run_dir, which is what rows store.
    """
    digest = hashlib.sha256(data).hexdigest()[:16]
    name = f"{stem}-{digest}.png" if stem else f"{digest}.png"
    rel = f"{IMAGES_DIR}/{name}"
    path = Path(run_dir) / rel
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".png.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return rel


def save_image(run_dir: str | Path, image: Any, stem: str = "") -> str:
    """Save a PIL image as PNG in the run directory; returns its relative path."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return save_png(run_dir, buf.getvalue(), stem)


def resolve(run_dir: str | Path | None, ref: str) -> Path:
    """Absolute path of an image reference (relative to the run directory, or absolute)."""
    p = Path(ref)
    if not p.is_absolute() and run_dir is not None:
        p = Path(run_dir) / p
    return p


def read_image_bytes(run_dir: str | Path | None, ref: str) -> bytes:
    path = resolve(run_dir, ref)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"image {ref!r} not found at {path}") from None


def image_struct_array(refs: list[str | None], base_dir: str | Path | None) -> pa.Array:
    """The {bytes, path} struct column for a list of image references (None stays null)."""
    values = [None if r is None else {"bytes": read_image_bytes(base_dir, r), "path": str(r)} for r in refs]
    return pa.array(values, type=IMAGE_STRUCT)


def with_image_columns(table: pa.Table, image_columns: list[str], base_dir: str | Path | None) -> pa.Table:
    """Replace path columns by embedded-image columns and declare them as `datasets` Image features.

    This is what the final Parquet writer must do for a pipeline that declares image columns:
    call it on the table just before `pq.write_table` (it keeps existing schema metadata).
    """
    present = [c for c in image_columns if c in table.column_names]
    for col in present:
        refs = table.column(col).to_pylist()
        bad = next((r for r in refs if r is not None and not isinstance(r, str)), None)
        if bad is not None:
            raise BadInputError(f"image column {col!r} must hold path strings, got {type(bad).__name__}")
        idx = table.column_names.index(col)
        table = table.set_column(idx, pa.field(col, IMAGE_STRUCT), image_struct_array(refs, base_dir))
    meta = dict(table.schema.metadata or {})
    hf = json.loads(meta[HF_METADATA_KEY]) if HF_METADATA_KEY in meta else {}
    features = hf.setdefault("info", {}).setdefault("features", {})
    for col in present:
        features[col] = {"_type": "Image"}
    meta[HF_METADATA_KEY] = json.dumps(hf).encode()
    return table.replace_schema_metadata(meta)
