"""Weights on disk: safetensors written only when every tensor is finite, read back without
unpickling, and loaded into a model with a one-line error for what does not match."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ...errors import CheckpointError, StorageError, TrainingError
from ...run_files import staged, storage


def non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor with a NaN or an infinity, if any."""
    return next((k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)


def save_weights(path: Path, module: nn.Module) -> None:
    """The module's state dict as safetensors (tied tensors stored once each under every name).
    A tensor that is not finite is never written: :class:`TrainingError` names it."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    bad = non_finite(tensors)
    if bad is not None:
        raise TrainingError(
            f"the model's tensor {bad!r} is not finite (NaN or infinite); nothing was written to "
            f"{str(path)!r} and the last complete checkpoint is kept"
        )
    with staged(path) as tmp, storage(path, "write"):
        try:
            save_file(tensors, str(tmp))
        except SafetensorError as exc:  # its I/O errors are not OSErrors
            raise StorageError(f"cannot write {str(path)!r}: {exc}") from None


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, or a ``torch.save`` of tensors (loaded with weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as exc:
        raise CheckpointError(f"weights file {str(path)!r} cannot be read ({exc.strerror})") from None
    except (SafetensorError, RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(
            f"weights file {str(path)!r} is corrupt or not a weights file ({str(exc).splitlines()[0]})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"weights file {str(path)!r} does not hold a state dict of tensors")
    bad = non_finite(state)
    if bad is not None:
        raise CheckpointError(f"weights file {str(path)!r} holds a tensor that is not finite: {bad!r}")
    return state


#: wrappers whose attribute name prefixes every key: Lightning's ``self.model``, DataParallel's
#: ``module``, a common ``net``
PREFIXES = ("model.", "module.", "net.")


def align_keys(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with a wrapper's prefix taken off its keys where that makes more of them the
    model's own (keys without the prefix — a Lightning module's loss or teacher — are left out)."""
    best, hits = state, len(own.keys() & state.keys())
    for prefix in PREFIXES:
        stripped = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if len(own.keys() & stripped.keys()) > hits:
            best, hits = stripped, len(own.keys() & stripped.keys())
    return best


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str, strict: bool = True) -> str:
    """``load_state_dict`` with a one-line error naming what does not match — or, not ``strict``,
    loading the tensors whose names and shapes match and returning a line on the rest ("" when
    everything matched)."""
    own = module.state_dict()
    state = align_keys(state, own)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    kinds = sorted(k for k in set(own) & set(state) if k not in wrong and _kind(own[k]) != _kind(state[k]))
    if not (missing or unexpected or wrong or kinds):
        module.load_state_dict(state)
        return ""
    parts = [
        f"missing {len(missing)} {missing[:3]}" if missing else "",
        f"unexpected {len(unexpected)} {unexpected[:3]}" if unexpected else "",
        f"other shapes {len(wrong)}, first {wrong[0]}: {tuple(state[wrong[0]].shape)} vs model "
        f"{tuple(own[wrong[0]].shape)}"
        if wrong
        else "",
        f"other kinds of number {len(kinds)}, first {kinds[0]}: {_kind(state[kinds[0]])} vs model "
        f"{_kind(own[kinds[0]])}"
        if kinds
        else "",
    ]
    found = "; ".join(p for p in parts if p)
    if strict:
        raise CheckpointError(f"{source} does not match the model ({found})")
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape and k not in kinds}
    module.load_state_dict(matching, strict=False)
    return f"{source}: loaded {len(matching)} of the model's {len(own)} tensors ({found})"


def _kind(tensor: torch.Tensor) -> str:
    """What a tensor's numbers are — loading casts within a kind (float16 into float32), never
    across (integers or booleans into weights)."""
    if tensor.dtype == torch.bool:
        return "bool"
    return "float" if tensor.is_floating_point() else "complex" if tensor.is_complex() else "integer"


def weights_hash(model: nn.Module) -> str:
    """SHA-256 of the model's state dict: names and raw bytes (of any dtype, bfloat16 too)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
