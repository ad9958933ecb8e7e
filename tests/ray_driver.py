"""A Ray-executor driver process for tests that kill it: `python tests/ray_driver.py RECIPE INPUT OUT SPEC ADDRESS`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from synthloom.pipeline.pipeline import pipeline_from_yaml
from synthloom.run.ray_executor import RayOptions, run_pipeline_ray
from synthloom.run.runner import RunOptions


def main(recipe: str, data: str, out: str, spec: str, address: str) -> None:
    opts = RunOptions(out=Path(out), input_path=Path(data), models={"generator": spec}, formats=("jsonl",))
    ray_opts = RayOptions(address=address, model_workers=2, parts_per_worker=2)
    result = asyncio.run(run_pipeline_ray(pipeline_from_yaml(recipe), opts, ray_opts))
    print(f"rows={len(result.rows)} complete={result.complete}")


if __name__ == "__main__":
    main(*sys.argv[1:6])
