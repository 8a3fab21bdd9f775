"""What a resumed run must be given again, in hashes that change when the objects do: the model's
initial weights, the first sample of each dataset and the loss's settings — not only their class
names, which other weights, other data of the same size or another loss weighting all share."""

from __future__ import annotations

import functools
import hashlib
import random
import types
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from .storage.weights import weights_hash


def model_print(model: nn.Module) -> dict[str, Any]:
    return {
        "model": f"{type(model).__module__}:{type(model).__qualname__}",
        "model_parameters": sum(p.numel() for p in model.parameters()),
        "model_weights": weights_hash(model)[:16],
    }


def data_print(data: Iterable[Any]) -> dict[str, Any]:
    """The data's type, size and first sample (of its dataset, so a shuffled loader gives the same;
    drawn under fixed seeds, so random augmentations give the same)."""
    dataset: Any = getattr(data, "dataset", data)
    sized = hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")
    with _seeded():
        first = dataset[0] if sized and len(dataset) else next(iter(data), None)
    return {
        "type": type(data).__name__,
        "samples": len(dataset) if hasattr(dataset, "__len__") else None,
        "first": _digest(first),
    }


def loss_print(loss: Callable[..., Any]) -> str:
    """A hash of a loss's settings: its code and the values it closes over (a function or
    ``functools.partial``), or its configuration and tensors (a module such as ``CrossEntropyLoss``)."""
    return _digest(_settings(loss))


def _settings(fn: Any) -> Any:
    if isinstance(fn, functools.partial):
        return [_settings(fn.func), fn.args, sorted(fn.keywords.items())]
    code = getattr(fn, "__code__", None)
    if code is not None:
        cells = [c.cell_contents for c in fn.__closure__ or ()]
        return [fn.__module__, fn.__qualname__, code, fn.__defaults__, *cells]
    plain = {
        k: v
        for k, v in sorted(getattr(fn, "__dict__", {}).items())
        if isinstance(v, (bool, int, float, str, type(None))) and k != "training"  # not the train/eval mode
    }
    tensors = fn.state_dict() if isinstance(fn, nn.Module) else {}
    return [type(fn).__module__, type(fn).__qualname__, plain, tensors]


def _digest(value: Any) -> str:
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()[:16]


def _feed(digest: Any, value: Any) -> None:
    if torch.is_tensor(value):
        t = value.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            digest.update(str(key).encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        for item in value:
            _feed(digest, item)
    elif isinstance(value, types.CodeType):
        digest.update(value.co_code)
        _feed(digest, value.co_consts)
    elif callable(value) and not isinstance(value, type):
        _feed(digest, _settings(value))
    else:
        text = repr(value)  # an object's default repr holds its address, which differs in every process
        digest.update((type(value).__qualname__ if " at 0x" in text else text).encode())


class _seeded:
    """Fixed seeds for torch, random and numpy inside the block, their states restored after."""

    def __enter__(self) -> None:
        self.states = (torch.random.get_rng_state(), random.getstate(), np.random.get_state())
        torch.manual_seed(0)
        random.seed(0)
        np.random.seed(0)

    def __exit__(self, *exc: object) -> None:
        torch.random.set_rng_state(self.states[0])
        random.setstate(self.states[1])
        np.random.set_state(self.states[2])
