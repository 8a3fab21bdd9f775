"""Where latency tables are kept: one JSON file per device, runtime, torch version and thread count,
holding every measured layer grid by signature; written atomically, read back tolerantly."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
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


def cache_file(device: torch.device, folder: Path, runtime: str = "eager") -> Path:
    """The cache of the tables measured on ``device`` in ``runtime`` (its name and version)."""
    key = f"{device_name(device)}|{runtime}|torch {torch.__version__}|threads {torch.get_num_threads()}"
    return folder / "latency" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def read_cache(path: Path) -> dict[str, Any]:
    """The cached grids by signature: none where the file is missing or of another format version,
    and none (with a warning) where it is not a cache at all; each grid is checked on use."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):  # not written yet (or cannot be: warned on writing)
        return {}
    except (OSError, ValueError) as exc:
        return _unusable(path, str(exc))
    except RecursionError:
        return _unusable(path, "nested too deeply")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {} if isinstance(data, dict) else _unusable(path, "not a JSON object")
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else _unusable(path, "its 'entries' are not a mapping")


def _unusable(path: Path, why: str) -> dict[str, Any]:
    warnings.warn(f"the latency table cache {path} is unusable ({why}); it is measured again", RuntimeWarning, 3)
    return {}


#: a cell of more channels may time this much faster than one of fewer: small layers timed in few
#: repeats on a busy machine were seen 2-3x off; ten times is damage, not noise
NOISE = 0.1


def entry_problem(entry: Any, expected: dict[str, Any]) -> str | None:
    """Why a cached grid cannot be trusted for a layer whose grid is ``expected`` (``ins``,
    ``outs``, ``diagonal``, ``off_ins``), or ``None``: its counts, its shape, times that are not
    finite positive seconds, or times that fall as channels grow beyond timing noise."""
    if not isinstance(entry, dict) or set(entry) != {*expected, "seconds", "off_seconds"}:
        return "not a grid of times"
    wrong = next((k for k, v in expected.items() if entry[k] != v), None)
    if wrong is not None:
        return f"{wrong} {entry[wrong]!r} is not the layer's {expected[wrong]!r}"
    width = 1 if expected["diagonal"] else len(expected["outs"])
    for name, rows in (("seconds", expected["ins"]), ("off_seconds", expected["off_ins"])):
        grid = entry[name]
        if not (isinstance(grid, list) and len(grid) == len(rows)) or any(
            not isinstance(r, list) or len(r) != width for r in grid
        ):
            return f"{name} is not {len(rows)}×{width}"
        bad = [v for r in grid for v in r if not _seconds(v)]
        if bad:
            return f"{name} holds {bad[0]!r}, not a positive number of seconds"
    return _falling(entry["seconds"])


def _seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _falling(grid: list[list[float]]) -> str | None:
    columns = [list(c) for c in zip(*grid)]
    for line in [*grid, *columns]:
        for fewer, more in itertools.pairwise(line):
            if more < NOISE * fewer:
                return f"times fall from {fewer:.3g} s to {more:.3g} s as channels grow"
    return None


def write_cache(path: Path, entries: dict[str, Any], device: torch.device, runtime: str = "eager") -> None:
    """Write the cache atomically; a cache that cannot be written only costs the next run time."""
    data = {
        "format": FORMAT,
        "device": device_name(device),
        "runtime": runtime,
        "torch": torch.__version__,
        "entries": entries,
    }
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
