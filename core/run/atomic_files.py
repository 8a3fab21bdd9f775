"""Writing files so that nothing is ever half-written, and reading weights without unpickling."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed over it when the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged_dir(folder: Path) -> Iterator[Path]:
    """A fresh directory beside ``folder``, moved into its place when the block ends without error."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    yield tmp
    replace_dir(tmp, folder)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``."""
    with staged(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2))


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{what} {str(path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{what} {str(path)!r} is corrupt ({exc})") from None


def save_weights(path: Path, module: nn.Module) -> None:
    """The module's state dict as safetensors (tied tensors stored once each under every name)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    with staged(path) as tmp:
        save_file(tensors, str(tmp))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, or a ``torch.save`` of tensors (loaded with weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(
            f"weights file {str(path)!r} is corrupt or not a weights file ({str(exc).splitlines()[0]})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"weights file {str(path)!r} does not hold a state dict of tensors")
    return state


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with a one-line error naming what does not match."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [
            f"missing {missing[:3]}" if missing else "",
            f"unexpected {unexpected[:3]}" if unexpected else "",
            f"shape mismatch at {wrong[0]}: {tuple(state[wrong[0]].shape)} vs model {tuple(own[wrong[0]].shape)}"
            if wrong
            else "",
        ]
        raise CheckpointError(f"{source} does not match the model ({'; '.join(p for p in parts if p)})")
    module.load_state_dict(state)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a completely written directory into place."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
