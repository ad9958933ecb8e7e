"""Audit speed: 10,000 synthetic rows against a 10,000-row reference and 2,000 private seeds.

Texts are 2-3 sentences drawn from the bundled encyclopedia corpus (about 40 words each), so the
two sets share a distribution. Prints wall and CPU seconds to embed (cold cache) and of the audit
with a warm cache (every measure: MAUVE, precision/recall, C2ST, coverage, leakage, PII, bias), and
the load average, since wall time on a shared machine says little. Target: under 120 s on 2 cores.

    .venv/bin/python benchmarks/bench_audit.py [--quick] [--rows N]

`--quick` uses 1,000 rows a side; `--embeddings int8` the quantised MiniLM. Rows that copy a whole
corpus sentence from a seed fail `share_verbatim`, as they should: the texts are built from a
small sentence pool.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import re
import tempfile
import time
from importlib import resources
from pathlib import Path

from synthloom.audit.embedcache import CachedEmbedder
from synthloom.audit.runner import run_audit


def cpu() -> float:
    """CPU seconds of this process, all threads: the work done, whatever else loads the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sentences() -> list[str]:
    path = resources.files("synthloom.eval") / "data" / "corpus.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [s for r in rows for s in re.split(r"(?<=\.)\s+", r["text"]) if len(s.split()) > 4]


def texts(n: int, seed: int, pool: list[str]) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(pool, rng.randint(2, 3))) + f" (note {rng.randint(0, 10**6)})" for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--embeddings", default="fp32", choices=["fp32", "int8"])
    args = ap.parse_args()
    n = 1_000 if args.quick else args.rows
    pool = sentences()
    synth, real, seeds = texts(n, 1, pool), texts(n, 2, pool), texts(n // 5, 3, pool)
    with tempfile.TemporaryDirectory() as tmp:
        emb = CachedEmbedder(path=Path(tmp) / "e.sqlite", precision=args.embeddings)
        emb.encode(["warm up the model"])  # model load is not part of the audit
        t0, c0 = time.perf_counter(), cpu()
        for part in (synth, real, seeds):
            emb.encode(part)
        t_embed, c_embed = time.perf_counter() - t0, cpu() - c0
        t1, c1 = time.perf_counter(), cpu()
        result = run_audit(synth, reference=real, private_seeds=seeds, limits=None, embedder=emb)
        t_audit, c_audit = time.perf_counter() - t1, cpu() - c1
    print(json.dumps({"embeddings": args.embeddings,
                      "rows": n, "reference": n, "private_seeds": len(seeds), "embed_s": round(t_embed, 1),
                      "audit_warm_s": round(t_audit, 1), "total_cold_s": round(t_embed + t_audit, 1),
                      "embed_cpu_s": round(c_embed, 1), "audit_cpu_s": round(c_audit, 1),
                      "load_average": round(os.getloadavg()[0], 1), "timings": result["timings"],
                      "fidelity_timings": result["fidelity"]["timings"],
                      "mauve": result["fidelity"]["mauve"], "c2st_auc": result["fidelity"]["c2st_auc"],
                      "precision": result["fidelity"]["precision"], "recall": result["fidelity"]["recall"],
                      "passed": result["passed"], "failed": result["failed"]}))


if __name__ == "__main__":
    main()
