"""Running pipelines: the run directory and its outputs (runner), sharded runs (merge), dry-run
estimates (estimate) and the Ray executor. Built on the engine core in `synthloom.pipeline`, which
imports nothing from here."""
