"""How much a cut changed a model's output on its example input (approximate cuts report it)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from ..graph.recording import as_args
from ..modes import eval_mode


def outputs(model: nn.Module, example_input: Any) -> list[torch.Tensor]:
    """The model's output tensors on ``example_input`` (eval mode, no gradients). An input given by
    shape only (meta tensors) is filled from a fixed seed, the same values before and after a cut."""
    generator = torch.Generator().manual_seed(0)

    def real(t: Any) -> Any:
        if isinstance(t, torch.Tensor) and t.is_meta:
            return (
                torch.randn(t.shape, generator=generator).to(t.dtype)
                if t.is_floating_point()
                else torch.zeros_like(t, device="cpu")
            )
        return t

    args = tree_map(real, as_args(example_input))
    with torch.no_grad(), eval_mode(model):
        result = model(*args)
    return [t.detach().float() for t in tree_flatten(result)[0] if isinstance(t, torch.Tensor)]


def relative_change(before: list[torch.Tensor], after: list[torch.Tensor]) -> float:
    """‖after − before‖ / ‖before‖ over all output tensors (L2)."""
    change = sum(float((a - b).pow(2).sum()) for a, b in zip(after, before))
    size = sum(float(b.pow(2).sum()) for b in before)
    return (change / size) ** 0.5 if size else float(change > 0)
