"""Writing files so that nothing is ever half-written, and checking that what is read back is
what was written (a SHA-256 manifest per folder). OS errors become :class:`StorageError`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...errors import CheckpointError, StorageError
from ...run_files import atomic_write_text, storage

MANIFEST = "manifest.json"


@contextmanager
def staged_dir(folder: Path) -> Iterator[Path]:
    """A fresh directory beside ``folder``, moved into its place when the block ends without error;
    on an error it is removed and ``folder`` stays as it was."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    with storage(folder, "write"):
        if tmp.exists():
            shutil.rmtree(tmp)  # a leftover of our own, from a process that died mid-write
        tmp.mkdir(parents=True)
    try:
        yield tmp
        with storage(folder, "write"):
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2))


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{what} {str(path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{what} {str(path)!r} is corrupt ({exc})") from None
    except RecursionError:
        raise CheckpointError(f"{what} {str(path)!r} is corrupt (nested too deeply)") from None
    except OSError as exc:
        raise StorageError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with storage(path, "read"), open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record the SHA-256 of every file in ``folder`` (written last, so a folder with a manifest
    is complete)."""
    files = {p.name: sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    atomic_write_json(folder / MANIFEST, {"format": "prunekit-manifest", "version": 1, "files": files})


def verify_manifest(folder: Path, what: str) -> None:
    """Raise :class:`CheckpointError` naming the first file of ``folder`` that breaks its manifest:
    an entry that is not a plain file name inside the folder, a file that is missing, a link, has
    other bytes than those recorded, or is in the folder without being listed."""
    manifest = read_json(folder / MANIFEST, f"{what} manifest")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise CheckpointError(f"{str(folder / MANIFEST)!r} is not a prunekit manifest")
    for name, expected in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..", MANIFEST):
            raise CheckpointError(f"{what} manifest {str(folder / MANIFEST)!r} lists {name!r}, not a file name in it")
        path = folder / name
        if path.is_symlink():
            raise CheckpointError(f"{what} file {str(path)!r} is a link; an export holds its files itself")
        if not path.is_file():
            raise CheckpointError(f"{what} file {str(path)!r} is missing")
        if sha256(path) != expected:
            raise CheckpointError(f"{what} file {str(path)!r} has changed since it was written (SHA-256 mismatch)")
    unlisted = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST and p.name not in files)
    if unlisted:
        raise CheckpointError(f"{what} {str(folder)!r} holds files its manifest does not list: {', '.join(unlisted)}")
