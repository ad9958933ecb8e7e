"""synthloom: generate, verify, filter and evaluate synthetic data for language models."""

__version__ = "0.1.0"
