"""The run directory: prunekit writes only into a new or empty folder, or one of its own runs, which
it marks with ``prunekit-run.json``. The marker also records the SHA-256 of the baseline weights,
so a resumed run never starts from a baseline that changed on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ... import distributed
from ...errors import CheckpointError, ConfigError, StorageError
from ..config import Config
from .atomic_files import atomic_write_json, atomic_write_text, read_json, sha256, storage

MARKER = "prunekit-run.json"
CONFIG = "config.yaml"


def is_run(folder: Path) -> bool:
    """Whether ``folder`` is a prunekit run directory."""
    return (Path(folder) / MARKER).is_file()


def claim(run_dir: Path, config: Config, resume: bool, objects: dict[str, Any] | None = None) -> None:
    """Check that this run may write into ``run_dir`` (every process checks before the main one
    writes), then mark it — with what the objects a caller gave look like, which a resumed run
    must match — and save the resolved config. Nothing is written when the check fails."""
    resolved = yaml.safe_dump(config.to_dict(), sort_keys=True)
    _check(run_dir, resolved, resume)
    if resume and is_run(run_dir):
        started = _marker(run_dir).get("objects", {})
        if started != (objects or {}):
            raise ConfigError(
                f"{str(run_dir)!r} was started with other objects ({started or 'none'}); resume it "
                f"with the same model, data and loss objects (given now: {objects or 'none'})"
            )
    distributed.barrier()
    if distributed.is_main():
        with storage(run_dir, "create the run directory"):
            run_dir.mkdir(parents=True, exist_ok=True)
        if not is_run(run_dir):
            marker = {"format": "prunekit-run", "version": 1, "files": {}, "objects": objects or {}}
            atomic_write_json(run_dir / MARKER, marker)
        atomic_write_text(run_dir / CONFIG, resolved)


def _check(run_dir: Path, resolved: str, resume: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise StorageError(f"run_dir {str(run_dir)!r} is a file, not a folder; choose another run_dir")
    if run_dir.is_dir() and not is_run(run_dir):
        with storage(run_dir, "read"):
            found = sorted(p.name for p in run_dir.iterdir())
        if found:
            shown = ", ".join(found[:4]) + (", …" if len(found) > 4 else "")
            raise ConfigError(
                f"run_dir {str(run_dir)!r} holds files prunekit did not write ({shown}); prunekit "
                "writes only into a new or empty folder or one of its own runs"
            )
    saved = run_dir / CONFIG
    if resume:
        if saved.is_file() and saved.read_text() != resolved:
            raise ConfigError(
                f"the config differs from the one {str(run_dir)!r} was started with; "
                "resume with the same config or start a new run_dir"
            )
    elif saved.exists():
        raise ConfigError(
            f"run directory {str(run_dir)!r} already holds a run; "
            "pass --resume to continue it, or choose another run_dir"
        )


def _marker(run_dir: Path) -> dict:
    marker = read_json(run_dir / MARKER, "run marker")
    if (
        not isinstance(marker, dict)
        or marker.get("format") != "prunekit-run"
        or not isinstance(marker.get("files"), dict)
    ):
        raise CheckpointError(f"{str(run_dir / MARKER)!r} is not a prunekit run marker")
    return marker


def record_file(run_dir: Path, path: Path) -> None:
    """Remember the SHA-256 of a file the run wrote at its top level (the baseline)."""
    marker = _marker(run_dir)
    marker["files"][path.name] = sha256(path)
    atomic_write_json(run_dir / MARKER, marker)


def verify(run_dir: Path, path: Path) -> None:
    """Raise :class:`CheckpointError` if ``path`` is not the file this run recorded."""
    recorded = _marker(run_dir)["files"].get(path.name)
    if recorded is None:
        raise CheckpointError(f"{str(path)!r} was not recorded by this run; start a new run_dir")
    if sha256(path) != recorded:
        raise CheckpointError(f"{str(path)!r} has changed since the run wrote it (SHA-256 mismatch)")
