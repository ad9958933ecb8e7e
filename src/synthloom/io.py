"""Reading and writing datasets: JSONL, Parquet, CSV and Hugging Face `save_to_disk` directories.

Every write is atomic (temp file + rename) so a crash never leaves a half-written file where a
finished one is expected.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from synthloom.errors import BadInputError
from synthloom.records import META, Row

PROVENANCE_KEY = b"synthloom"  # Parquet schema-metadata key of the synthetic-data label
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what tempfile.mkstemp makes in atomic_path


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temps(folders: Iterable[str | Path]) -> int:
    """Delete the temp files `atomic_path` left in `folders` (not below them) when a process was
    killed mid-write; call it only while no other process writes there. Returns the count."""
    removed = 0
    for folder in folders:
        for tmp in Path(folder).glob(".*.tmp"):
            if _TEMP_NAME.match(tmp.name) and tmp.is_file():
                try:
                    tmp.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "hf"
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    return {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
            ".csv": "csv"}.get(suffix, "jsonl")


def read_rows(path: str | Path, fmt: str = "auto") -> list[Row]:
    """Read a dataset file into rows, raising BadInputError (one line) on any problem."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"input file {p} does not exist")
    fmt = detect_format(p) if fmt == "auto" else fmt
    try:
        if fmt == "jsonl":
            return list(_iter_jsonl(p))
        if fmt == "parquet":
            return [_decode_meta(r) for r in pq.read_table(p).to_pylist()]
        if fmt == "csv":
            with p.open(newline="", encoding="utf-8") as f:
                return [dict(r) for r in csv.DictReader(f)]
        if fmt == "hf":
            return _read_hf_dir(p)
    except UnicodeDecodeError as e:
        raise BadInputError(f"{p} is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except (pa.ArrowInvalid, OSError) as e:
        raise BadInputError(f"cannot read {p} as {fmt}: {str(e).splitlines()[0]}") from None
    raise BadInputError(f"unknown input format {fmt!r} for {p}; use jsonl, parquet, csv or hf")


def _iter_jsonl(p: Path) -> Iterator[Row]:
    with p.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise BadInputError(f"{p}:{lineno}: line is not valid UTF-8 (byte {e.start})") from None
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInputError(f"{p}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise BadInputError(f"{p}:{lineno}: each line must be a JSON object, got {type(obj).__name__}")
            yield obj


def _decode_meta(row: Row) -> Row:
    meta = row.get(META)
    if isinstance(meta, str):
        try:
            row[META] = json.loads(meta)
        except json.JSONDecodeError:
            pass
    return row


def _read_hf_dir(p: Path) -> list[Row]:
    """A `datasets.save_to_disk` directory: Arrow IPC stream files listed in state.json."""
    state = p / "state.json"
    files = []
    if state.exists():
        files = [p / f["filename"] for f in json.loads(state.read_text())["_data_files"]]
    else:
        files = sorted(p.glob("*.arrow"))
    if not files:
        raise BadInputError(f"{p} is a directory but holds no Hugging Face dataset (no state.json or *.arrow)")
    rows: list[Row] = []
    for f in files:
        with pa.memory_map(str(f)) as src:
            try:
                table = pa.ipc.open_stream(src).read_all()
            except pa.ArrowInvalid:
                table = pa.ipc.open_file(src).read_all()
        rows.extend(table.to_pylist())
    return rows


def write_jsonl(rows: Iterable[Row], path: str | Path) -> int:
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str))
            f.write("\n")
            n += 1
    return n


def rows_to_table(rows: list[Row]) -> pa.Table:
    """Rows to an Arrow table with real columns; `_meta` becomes a JSON string column.

    A column whose values Arrow cannot unify (e.g. int in one row, dict in another) is stored
    as JSON text rather than failing the export.
    """
    columns: dict[str, list[Any]] = {}
    for i, row in enumerate(rows):
        for key in row:
            if key not in columns:
                columns[key] = [None] * i
        for key, values in columns.items():
            value = row.get(key)
            if key == META and value is not None:
                value = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
            values.append(value)
    arrays, names = [], []
    for key, values in columns.items():
        try:
            arr = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arr = pa.array([None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in values])
        arrays.append(arr)
        names.append(key)
    return pa.Table.from_arrays(arrays, names=names)


def write_parquet(rows: list[Row], path: str | Path, label: dict[str, Any] | None = None,
                  image_columns: list[str] | None = None, base_dir: str | Path | None = None) -> int:
    """Write rows as Parquet; image columns (paths relative to `base_dir`) are embedded as
    `datasets` Image features, and `label` becomes the synthetic-data schema label."""
    table = rows_to_table(rows)
    if image_columns:
        from synthloom.multimodal.images import with_image_columns

        table = with_image_columns(table, image_columns, base_dir)
    if label is not None:
        meta = dict(table.schema.metadata or {})
        meta[PROVENANCE_KEY] = json.dumps(label, sort_keys=True).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return table.num_rows


def read_parquet_label(path: str | Path) -> dict[str, Any] | None:
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else None
