"""Eager PyTorch: the model called as it is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunekit.plugin import NoArgs, Spec, alignment, eager, hookimpl


class Eager:
    """The model called as it is, in eval mode, without gradients."""

    name, times_layers = "eager", True

    def available(self, device: torch.device) -> str | None:
        return None

    def version(self) -> str:
        return torch.__version__

    def alignment(self, device: torch.device) -> int:
        return alignment(device)

    def prepare(self, model: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
        return eager(model, example)


@hookimpl
def prunekit_runtimes() -> list[Spec]:
    return [
        Spec("eager", Eager, "eager PyTorch: the model called as it is", NoArgs),
    ]
