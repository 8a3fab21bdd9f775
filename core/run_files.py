"""The files a run directory holds by its own name, the one way a logger or plugin places a file
of its own there — a plain name below the run directory, never one of the run's, never through a
link (a link would carry the run's writes somewhere else) — and the one way every file is
written: beside its place, then renamed into it, so nothing is half-written and a link planted
at the place is replaced, never written through."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import ConfigError, StorageError

MARKER = "prunekit-run.json"
CONFIG = "config.yaml"
LOG = "log.jsonl"
LOCK = "prunekit.lock"
BASELINE = "baseline.safetensors"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
EXPORT = "export"
#: every name prunekit itself writes at the top of a run directory
OWN = frozenset(
    {MARKER, CONFIG, LOG, LOCK, BASELINE, SUMMARY, CHECKPOINTS, EXPORT, "report.md"}
    | {"steps.png", "channels.png", "blocks.png"}
)


def check_name(name: str, what: str) -> Path:
    """``name`` as a relative path inside a run directory that is none of the run's own files."""
    path = Path(name)
    if not name or path.is_absolute() or ".." in path.parts or not path.parts:
        raise ConfigError(f"{what}: {name!r} must be a file name inside the run directory")
    if path.parts[0] in OWN:
        raise ConfigError(
            f"{what}: {name!r} is the run's own file; choose another name (the run writes {', '.join(sorted(OWN))})"
        )
    return path


def run_file(run_dir: Path | str, name: str, what: str = "a logger's file") -> Path:
    """Where a logger or plugin may write ``name`` in ``run_dir``: checked as :func:`check_name`
    does, and refused when it, or a folder between it and ``run_dir``, is a link."""
    path = Path(run_dir)
    for part in check_name(name, what).parts:
        path = path / part
        if path.is_symlink():
            raise StorageError(f"{what}: {str(path)!r} is a link; a run writes its files in its own folder")
    return path


def open_to_append(path: Path, newline: str | None = None) -> IO[str]:
    """``path`` opened for appending text, created if missing — refused if it is a link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        if path.is_symlink():
            raise StorageError(f"{str(path)!r} is a link; a run writes its files in its own folder") from None
        raise StorageError(f"cannot open {str(path)!r} to append: {exc.strerror or exc}") from None
    return os.fdopen(fd, "a", newline=newline)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: permissions of the files written: what ``open`` would give, not mkstemp's owner-only 0600
FILE_MODE = 0o666 & ~_umask()


@contextmanager
def storage(path: Path, action: str) -> Iterator[None]:
    """Turn an OS error inside the block into a one-line :class:`StorageError` naming ``path``."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise StorageError(f"cannot {action} {str(path)!r}: {exc.strerror or exc}") from None


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed over it when the block ends without error."""
    with storage(path, "write"):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        os.chmod(name, FILE_MODE)
    tmp = Path(name)
    try:
        yield tmp
        with storage(path, "write"):
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``."""
    with staged(path) as tmp, storage(path, "write"), open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
