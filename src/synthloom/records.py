"""Records: flat JSON-serialisable dicts plus a reserved `_meta` provenance dict.

`_meta` keys (DESIGN.md, Core contracts): id (stable content hash), parents, recipe, step, model,
prompt_sha, params, seed, created_at, synthetic, version, verdicts ({verifier: {ok, method, evidence}}),
usage ({prompt_tokens, completion_tokens}), and raw ({step: raw model text}).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from synthloom import __version__

META = "_meta"
Row = dict[str, Any]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_id(row: Row) -> str:
    """Stable id of a row's content (everything but `_meta`), 16 hex chars."""
    body = {k: v for k, v in row.items() if k != META}
    return sha256_hex(canonical_json(body))[:16]


def derive_seed(run_seed: int, record_id: str, step: str, sample_index: int = 0) -> int:
    """Per-request seed from (run seed, record id, step, sample index): independent of scheduling.

    Kept below 2**31 because llama.cpp and several servers take a signed 32-bit seed.
    """
    digest = hashlib.sha256(f"{run_seed}\x1f{record_id}\x1f{step}\x1f{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1)


def meta_of(row: Row) -> dict[str, Any]:
    meta = row.get(META)
    return meta if isinstance(meta, dict) else {}


def source_meta(row: Row, recipe: str, created_at: str) -> dict[str, Any]:
    """Provenance for a row that enters a pipeline (seed data or a generator's output)."""
    existing = meta_of(row)
    return {
        "id": content_id(row),
        "parents": list(existing.get("parents", [])),
        "recipe": recipe,
        "step": "source",
        "model": existing.get("model"),
        "prompt_sha": None,
        "params": {},
        "seed": None,
        "created_at": created_at,
        "synthetic": bool(existing.get("synthetic", False)),
        "version": __version__,
        "verdicts": dict(existing.get("verdicts", {})),
        "usage": {"prompt_tokens": 0, "completion_tokens": 0},
    }


def derive_row(parent: Row, updates: Row, step: str, **meta_updates: Any) -> Row:
    """A new row made from `parent` by a step: copies columns, applies updates, links the parent.

    The new row's id hashes its content *and* its parent id so two identical outputs of
    different parents stay distinguishable; verdicts and usage accumulate along the lineage.
    """
    pmeta = meta_of(parent)
    row = {k: v for k, v in parent.items() if k != META}
    row.update(updates)
    meta = dict(pmeta)
    meta["parents"] = [pmeta["id"]] if "id" in pmeta else []
    meta["step"] = step
    meta["verdicts"] = dict(pmeta.get("verdicts", {}))
    meta["usage"] = dict(pmeta.get("usage", {"prompt_tokens": 0, "completion_tokens": 0}))
    if "raw" in pmeta:
        meta["raw"] = dict(pmeta["raw"])
    for key, value in meta_updates.items():
        if key == "verdicts":
            meta["verdicts"].update(value)
        elif key == "usage":
            for k, v in value.items():
                meta["usage"][k] = meta["usage"].get(k, 0) + v
        elif key == "raw":
            meta.setdefault("raw", {}).update(value)
        else:
            meta[key] = value
    meta["id"] = sha256_hex(canonical_json([meta["parents"], {k: v for k, v in row.items()}]))[:16]
    row[META] = meta
    return row


def add_verdict(row: Row, verifier: str, ok: bool | None, detail: str = "", method: str = "") -> Row:
    """Record a verifier's verdict on a row in place (ok=None means unknown); see synthloom.verdicts."""
    meta = row.setdefault(META, {})
    meta.setdefault("verdicts", {})[verifier] = {"ok": ok, "method": method or verifier,
                                                 "evidence": str(detail)[:500]}
    return row


def strip_volatile(row: Row) -> Row:
    """A copy without fields that legitimately differ between identical runs (timestamps)."""
    out = dict(row)
    if META in out:
        out[META] = {k: v for k, v in out[META].items() if k != "created_at"}
    return out
