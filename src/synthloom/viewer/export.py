"""Export reviewed rows: as a filter (accepted rows only) or as a gold evaluation set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from synthloom.errors import BadInputError
from synthloom.io import write_jsonl
from synthloom.records import META, Row
from synthloom.viewer.dataset import ViewerDataset
from synthloom.viewer.reviews import apply_review, human_label
from synthloom.viewer.store import DB_NAME, Decision, ReviewStore

ExportMode = Literal["filter", "gold"]
MODES = ("filter", "gold")


def reviewed_rows(dataset: ViewerDataset, reviews: dict[str, dict[str, Decision]], mode: str) -> Iterator[Row]:
    """filter: rows every reviewer accepted (edits applied, kept or rescued from rejected/).
    gold: every row with a unanimous label, plus `human_label` (accept|reject) and `human_comment`."""
    if mode not in MODES:
        raise BadInputError(f"unknown export mode {mode!r}; use filter or gold")
    for entry in dataset.entries:
        decisions = reviews.get(entry.key)
        if not decisions:
            continue
        label = human_label(decisions)
        row = apply_review(entry.row, decisions)
        if mode == "filter":
            if label is True:
                yield row
        elif label is not None:
            verdict: dict[str, Any] = row[META]["verdicts"]["human"]
            body = {k: v for k, v in row.items() if k != META}
            yield {**body, "human_label": "accept" if label else "reject",
                   "human_comment": verdict["detail"], "pipeline_status": entry.status,
                   META: row[META]}


def export_reviewed(run_dir: Path, out_path: Path, mode: ExportMode = "filter") -> int:
    """Write reviewed rows of `run_dir` to `out_path` (JSONL); returns the number of rows written."""
    run_dir = Path(run_dir)
    if mode not in MODES:
        raise BadInputError(f"unknown export mode {mode!r}; use filter or gold")
    if not (run_dir / DB_NAME).exists():
        raise BadInputError(f"{run_dir} has no reviews yet ({DB_NAME} not found): review rows with `synthloom view`")
    store = ReviewStore.for_run(run_dir)
    try:
        reviews = store.latest()
    finally:
        store.close()
    dataset = ViewerDataset.load(run_dir)
    return write_jsonl(reviewed_rows(dataset, reviews, mode), Path(out_path))
