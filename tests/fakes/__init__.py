"""Local fake servers for tests and benchmarks: fault-injecting and zero-latency OpenAI endpoints."""

from .openai_server import FakeOpenAIServer, fingerprint, free_port

__all__ = ["FakeOpenAIServer", "fingerprint", "free_port"]
