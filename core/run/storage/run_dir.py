"""The run directory: prunekit writes only into a new or empty folder, or one of its own runs, which
it marks with ``prunekit-run.json`` and holds locked while it runs. Runs never nest. The marker also
records the SHA-256 of the baseline weights, so a resumed run never starts from a baseline that
changed on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

import yaml

from ... import distributed
from ...errors import CheckpointError, ConfigError, StorageError
from ...run_files import BASELINE, CHECKPOINTS, CONFIG, EXPORT, LOCK, MARKER, SUMMARY, atomic_write_text, storage
from ..config import Config
from .atomic_files import atomic_write_json, read_json, sha256

#: the config sections a baseline is trained from
BASELINE_FROM = ("model", "data", "task", "train", "seed", "loss", "loss_schedule", "plugins")


def is_run(folder: Path) -> bool:
    """Whether ``folder`` is a prunekit run directory."""
    return (Path(folder) / MARKER).is_file()


class Lock:
    """A run directory held for one process: an exclusive ``flock`` on its lock file, which names
    the holder's pid. The system drops it when the process ends, however it ends."""

    def __init__(self, run_dir: Path) -> None:
        self.handle: IO[str] | None = None
        try:
            import fcntl
        except ImportError:  # no advisory locks here (Windows): the folder is not guarded
            return
        path = run_dir / LOCK
        with storage(path, "open the lock file"):
            handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644), "r+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                f"run_dir {str(run_dir)!r} is in use by process {holder} ({LOCK}); "
                "wait for that run to end, or choose another run_dir"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing drops the flock
            self.handle = None


def refuse_if_held(run_dir: Path) -> None:
    """Refuse at once — before a run builds anything — a run directory another process holds."""
    if (run_dir / LOCK).is_file() and not run_dir.is_symlink():
        Lock(run_dir).release()


def claim(run_dir: Path, config: Config, resume: bool, objects: dict[str, Any] | None = None) -> Lock | None:
    """Check that this run may write into ``run_dir`` (every process checks before the main one
    writes), lock it for the main process, then mark it — with what the objects a caller gave
    look like, which a resumed run must match — and save the resolved config. A folder that is
    not the run's to take gets nothing written; a refused run of its own, only the lock file.
    Returns the main process's lock."""
    resolved = yaml.safe_dump(config.to_dict(), sort_keys=True)
    _check_place(run_dir)
    if not distributed.is_main():
        _check_config(run_dir, resolved, resume)
    distributed.barrier()  # every process has looked before the main one writes
    if not distributed.is_main():
        return None
    with storage(run_dir, "create the run directory"):
        run_dir.mkdir(parents=True, exist_ok=True)
    lock = Lock(run_dir)  # first: a second process is told who holds the run
    try:
        if _check_config(run_dir, resolved, resume):
            _start_again(run_dir, config)
        _mark(run_dir, resume, objects)
        atomic_write_text(run_dir / CONFIG, resolved)
    except BaseException:
        lock.release()
        raise
    return lock


def _mark(run_dir: Path, resume: bool, objects: dict[str, Any] | None) -> None:
    if resume and is_run(run_dir):
        started, given = _marker(run_dir).get("objects", {}), objects or {}
        differ = sorted(k for k in {*started, *given} if started.get(k) != given.get(k))
        if differ:
            raise ConfigError(
                f"{str(run_dir)!r} was started with other objects (they differ in: {', '.join(differ)}); resume "
                "it with the same model (its initial weights too: seed or load them as before), data and loss"
            )
    if not is_run(run_dir):
        marker = {"format": "prunekit-run", "version": 1, "files": {}, "objects": objects or {}}
        atomic_write_json(run_dir / MARKER, marker)


def _check_place(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise StorageError(f"run_dir {str(run_dir)!r} is a file, not a folder; choose another run_dir")
    _check_nesting(run_dir)
    if run_dir.is_dir() and not is_run(run_dir):
        with storage(run_dir, "read"):
            found = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK)
        if found:
            shown = ", ".join(found[:4]) + (", …" if len(found) > 4 else "")
            raise ConfigError(
                f"run_dir {str(run_dir)!r} holds files prunekit did not write ({shown}); prunekit "
                "writes only into a new or empty folder or one of its own runs"
            )


def _check_config(run_dir: Path, resolved: str, resume: bool) -> bool:
    """Whether this run may write here with config ``resolved``; True where a resume brings a new
    config to a run that stopped before its first step (which then starts again with it)."""
    saved = run_dir / CONFIG
    if resume:
        if saved.is_file() and saved.read_text() != resolved:
            if not _began_pruning(run_dir):
                return True
            raise ConfigError(
                f"the config differs from the one {str(run_dir)!r} was started with, and the run has pruned "
                "since; resume with the same config or start a new run_dir"
            )
    elif saved.exists():
        raise ConfigError(
            f"run directory {str(run_dir)!r} already holds a run; continue it with --resume (from Python: "
            "run(resume=True), steps(resume=True)) — with a corrected config, if it stopped before its first "
            "step — or choose another run_dir"
        )
    return False


def _began_pruning(run_dir: Path) -> bool:
    """Whether the run took a step (or finished): its config is then what its results mean."""
    steps = run_dir / CHECKPOINTS
    return (run_dir / SUMMARY).exists() or (run_dir / EXPORT).exists() or (steps.is_dir() and any(steps.iterdir()))


def _start_again(run_dir: Path, config: Config) -> None:
    """A run that stopped before its first step, started again with another config: its baseline
    is kept where what it was trained from (model, data, task, training, seed) is unchanged."""
    with storage(run_dir / CONFIG, "read"):
        saved = yaml.safe_load((run_dir / CONFIG).read_text()) or {}
    now = config.to_dict()
    if all(saved.get(key) == now.get(key) for key in BASELINE_FROM) or not recorded(run_dir, BASELINE):
        return
    marker = _marker(run_dir)
    del marker["files"][BASELINE]
    atomic_write_json(run_dir / MARKER, marker)
    with storage(run_dir / BASELINE, "remove"):
        (run_dir / BASELINE).unlink(missing_ok=True)


def _check_nesting(run_dir: Path) -> None:
    """A run's folder holds that run only: a resume of the outer run would replace the inner one."""
    outer = next((p for p in Path(os.path.abspath(run_dir)).parents if is_run(p)), None)
    if outer is not None:
        raise ConfigError(f"run_dir {str(run_dir)!r} is inside the run {str(outer)!r}; choose a folder outside it")
    if is_run(run_dir):
        with storage(run_dir, "read"):
            inner = next((p.parent for p in run_dir.rglob(MARKER) if p.parent != run_dir), None)
        if inner is not None:
            raise ConfigError(
                f"run_dir {str(run_dir)!r} holds another run at {str(inner)!r}; move that run out of it first"
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


def recorded(run_dir: Path, name: str) -> bool:
    """Whether the run wrote (and recorded) the top-level file ``name``."""
    return is_run(run_dir) and name in _marker(run_dir)["files"]


def verify(run_dir: Path, path: Path) -> None:
    """Raise :class:`CheckpointError` if ``path`` is not the file this run recorded."""
    recorded = _marker(run_dir)["files"].get(path.name)
    if recorded is None:
        raise CheckpointError(f"{str(path)!r} was not recorded by this run; start a new run_dir")
    if sha256(path) != recorded:
        raise CheckpointError(f"{str(path)!r} has changed since the run wrote it (SHA-256 mismatch)")
