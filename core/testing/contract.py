"""What a failed check raises, and the comparisons every check uses."""

from __future__ import annotations

import torch


class ContractError(AssertionError):
    """A plugin does not do what its hook promises."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ContractError(message)


def close_enough(a: torch.Tensor, b: torch.Tensor, what: str, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    require(a.shape == b.shape, f"{what}: shape {tuple(a.shape)} instead of {tuple(b.shape)}")
    require(torch.allclose(a, b, rtol=rtol, atol=atol), f"{what}: differs by {(a - b).abs().max().item():.3g}")
