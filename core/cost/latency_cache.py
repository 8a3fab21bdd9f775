"""Where latency tables are kept: one JSON file per device, torch version and thread count,
holding every measured layer grid by signature; written atomically, read back tolerantly."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

#: the file layout's version: grids measured by another version are measured again
FORMAT = 2


def device_name(device: torch.device) -> str:
    """The device's model and the kernels it runs (CPU: its model name and vector extensions)."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{_cpu_model()} {torch.backends.cpu.get_cpu_capability()}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_file(device: torch.device, folder: Path) -> Path:
    key = f"{device_name(device)}|torch {torch.__version__}|threads {torch.get_num_threads()}"
    return folder / "latency" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data["entries"] if data.get("format") == FORMAT else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # a missing or unreadable cache is measured again


def write_cache(path: Path, entries: dict[str, Any], device: torch.device) -> None:
    """Write the cache atomically; a cache that cannot be written only costs the next run time."""
    data = {"format": FORMAT, "device": device_name(device), "torch": torch.__version__, "entries": entries}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(data, f)
        os.replace(f.name, path)
    except OSError as exc:
        warnings.warn(
            f"cannot write the latency table cache {path} ({exc.strerror or exc}); the next run measures again "
            "(set PRUNEKIT_CACHE_DIR to a writable folder)",
            RuntimeWarning,
            stacklevel=3,
        )
