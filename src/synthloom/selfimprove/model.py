"""The trainable base model: SmolLM2-135M dequantised from the bundled GGUF, cached as an HF folder.

transformers can read GGUF directly (via the `gguf` package), but converting the tokenizer and
dequantising every tensor takes about a minute on a small CPU; the first load therefore saves a plain
Hugging Face copy under the synthloom cache, keyed by the GGUF's sha256, and later loads read that.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from synthloom.errors import ConfigError
from synthloom.llm.embedded_files import default_model_path, file_sha256


def _cache_root() -> Path:
    # same root as the embedded engine's hash cache: SYNTHLOOM_CACHE_DIR, else XDG cache
    base = os.environ.get("SYNTHLOOM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "synthloom")
    return Path(base)


def hf_cache_dir(gguf_path: str) -> Path:
    return _cache_root() / "hf" / file_sha256(gguf_path)[:16]


def base_model_dir(gguf_path: str | None = None) -> Path:
    """A Hugging Face folder (config, safetensors, tokenizer) holding the dequantised GGUF model."""
    gguf_path = gguf_path or default_model_path()
    if not os.path.exists(gguf_path):
        raise ConfigError(f"GGUF file {gguf_path} does not exist")
    target = hf_cache_dir(gguf_path)
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # a GGUF-loaded model is flagged as quantized and refuses save_pretrained: copy it into a plain one
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)  # atomic: a concurrent loader sees either nothing or a whole folder
    except OSError:
        pass  # another process won the race; its folder is equivalent
    return target


def load_base(gguf_path: str | None = None, threads: int | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 on CPU, eval mode, pad token set."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    folder = base_model_dir(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    return model, tokenizer
