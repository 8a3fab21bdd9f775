"""Where prunekit keeps what is costly to find out again: latency tables, the zoos' model lists."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$PRUNEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/prunekit``, else ``~/.cache/prunekit``."""
    if os.environ.get("PRUNEKIT_CACHE_DIR"):
        return Path(os.environ["PRUNEKIT_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prunekit"
