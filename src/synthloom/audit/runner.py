"""Run the parts of the audit that apply and gather their checks into one result.

`audit.json` shape: {passed, failed: [names], checks: [...], fidelity, privacy, pii, canaries, bias,
seconds, embeddings: {hits, misses}}. A check that could not be measured is "unknown" and does
not fail the audit; any failed check does (`synthloom audit` then exits 4).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthloom.audit.fidelity import FidelityLimits
from synthloom.audit.leakage import PrivacyLimits
from synthloom.errors import BadInputError

from synthloom.report.audit_section import AUDIT_FILE, load_audit  # noqa: F401  (the audit writes what the report reads)


@dataclass
class AuditLimits:
    fidelity: FidelityLimits = field(default_factory=FidelityLimits)
    privacy: PrivacyLimits = field(default_factory=PrivacyLimits)
    bias: Any = None  # BiasLimits, filled in lazily so the bias module loads only when used

    @classmethod
    def from_pairs(cls, pairs: dict[str, Any]) -> "AuditLimits":
        """Limits with overrides by field name, e.g. {"mauve_min": 0.6, "canary_exposure_max": 0.1}."""
        from synthloom.audit.bias import BiasLimits

        parts = {"fidelity": FidelityLimits(), "privacy": PrivacyLimits(), "bias": BiasLimits()}
        known: dict[str, str] = {f.name: part for part, obj in parts.items() for f in dataclasses.fields(obj)}
        updates: dict[str, dict[str, float]] = {}
        for key, value in pairs.items():
            if key not in known:
                raise BadInputError(f"unknown audit threshold {key!r}; known: {', '.join(sorted(known))}")
            try:
                updates.setdefault(known[key], {})[key] = float(value)
            except (TypeError, ValueError):
                raise BadInputError(f"audit threshold {key}={value!r} must be a number") from None
        for part, fields in updates.items():
            parts[part] = dataclasses.replace(parts[part], **fields)
        return cls(**parts)


def _clean(texts: Sequence[str], what: str) -> list[str]:
    out = [t for t in texts if t and t.strip()]
    if len(out) < 2:
        raise BadInputError(f"{what} needs at least 2 non-empty texts, got {len(out)}")
    return out


def run_audit(texts: Sequence[str], *, reference: Sequence[str] | None = None,
              private_seeds: Sequence[str] | None = None, canaries: Sequence[str] | None = None,
              bias: bool = True, pii: bool = True, limits: AuditLimits | None = None, embedder: Any = None,
              seed: int = 0, use_mauve: bool = True, sample: int | None = None) -> dict[str, Any]:
    """The audit of synthetic `texts`; each optional input turns on the part that needs it.

    `sample` caps the rows per side that the fidelity measures see (a seeded random subset; MAUVE
    and the k-NN manifolds are stable from a few thousand rows). Leakage, canaries, PII and bias
    always look at every row: a rare leak must not be sampled away.
    """
    from synthloom.audit.embedcache import CachedEmbedder

    limits = limits or AuditLimits.from_pairs({})
    started = time.perf_counter()
    texts = _clean(texts, "the audited dataset")
    embedder = embedder if embedder is not None else CachedEmbedder()
    result: dict[str, Any] = {"rows": len(texts), "limits": {
        "fidelity": dataclasses.asdict(limits.fidelity), "privacy": dataclasses.asdict(limits.privacy),
        "bias": dataclasses.asdict(limits.bias)}}
    checks: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    ref = _clean(reference, "the reference set") if reference is not None else None
    seeds = _clean(private_seeds, "the private seed set") if private_seeds is not None else None
    fid_texts = texts
    if ref is not None and sample is not None:
        ref, fid_texts = _subsample(ref, sample, seed), _subsample(texts, sample, seed + 1)
        result["fidelity_sample"] = sample
    synth_emb = embedder.encode(texts) if seeds is not None or (ref is not None and fid_texts is texts) else None
    ref_emb = embedder.encode(ref) if ref is not None else None
    fid_emb = None
    if ref is not None:
        fid_emb = synth_emb if fid_texts is texts else embedder.encode(fid_texts)
    seed_emb = embedder.encode(seeds) if seeds is not None else None
    lap("embed")
    if ref is not None:
        from synthloom.audit.fidelity import fidelity_audit

        part = fidelity_audit(ref, fid_texts, ref_emb, fid_emb, limits.fidelity, seed=seed, use_mauve=use_mauve)
        result["fidelity"] = part["measures"]
        checks += _tagged("fidelity", part["checks"])
        lap("fidelity")
    if seeds is not None:
        from synthloom.audit.leakage import leakage_audit

        part = leakage_audit(texts, seeds, synth_emb, seed_emb, limits.privacy)
        result["privacy"] = part["measures"]
        checks += _tagged("privacy", part["checks"])
        lap("leakage")
    if canaries:
        from synthloom.audit.canary import canary_exposure

        part = canary_exposure(texts, canaries, limits.privacy.canary_exposure_max)
        result["canaries"] = part["measures"]
        checks += _tagged("privacy", part["checks"])
    if pii:
        from synthloom.audit.checks import Check
        from synthloom.audit.pii import pii_summary

        result["pii"] = pii_summary(texts)
        check = Check("share_with_pii", result["pii"]["share_with_pii"], limits.privacy.pii_share_max, False,
                      "rows with PII found by Presidio pattern recognisers")
        checks += _tagged("privacy", [check.as_dict()])
        lap("pii")
    if bias:
        from synthloom.audit.bias import bias_audit

        part = bias_audit(texts, reference, limits.bias)
        result["bias"] = part["measures"]
        checks += _tagged("bias", part["checks"])
        lap("bias")
    result["checks"] = checks
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["timings"] = timings
    if hasattr(embedder, "hits"):
        result["embeddings"] = {"cached": embedder.hits, "computed": embedder.misses}
    return finalize(result)


def add_part(result: dict[str, Any], key: str, area: str, part: dict[str, Any]) -> dict[str, Any]:
    """Merge a part measured outside `run_audit` (e.g. the counterfactual check) into `result`."""
    result[key] = part["measures"]
    result["checks"] = result.get("checks", []) + _tagged(area, part["checks"])
    return finalize(result)


def finalize(result: dict[str, Any]) -> dict[str, Any]:
    result["failed"] = [c["name"] for c in result["checks"] if c["status"] == "failed"]
    result["passed"] = not result["failed"]
    return result


def _subsample(texts: list[str], n: int, seed: int) -> list[str]:
    if n < 2:
        raise BadInputError(f"--sample must be at least 2, got {n}")
    if len(texts) <= n:
        return texts
    import random

    keep = sorted(random.Random(seed).sample(range(len(texts)), n))
    return [texts[i] for i in keep]


def _tagged(area: str, checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"area": area, **c} for c in checks]


def write_audit(result: dict[str, Any], path: Path) -> Path:
    from synthloom.io import write_text_atomic

    write_text_atomic(path, json.dumps(result, indent=2, ensure_ascii=False, default=float))
    return path



