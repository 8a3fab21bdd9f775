"""Eager PyTorch, the runtime every other is compared with: a forward finished on its device, and
the channel multiple its kernels run fast at (the default alignment of pruning)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def eager(model: nn.Module | Callable[[torch.Tensor], Any], example: torch.Tensor) -> Callable[[], Any]:
    """One forward of ``model`` on ``example`` without gradients, finished on its device when the
    call returns: what the ``eager`` runtime runs (and what is timed where no runtime is named),
    and what a runtime that builds another callable from the model can call it through."""

    def forward() -> Any:
        with torch.no_grad():
            out = model(example)
        if example.device.type == "cuda":
            torch.cuda.synchronize(example.device)
        return out

    return forward


def alignment(device: torch.device) -> int:
    """The channel multiple pruning keeps counts at on ``device`` (``align: auto``): 16 on CPUs, 8 on
    GPUs. CPU kernels work on blocks of 16 channels with AVX-512 and 8 with AVX2 (oneDNN's blocked
    layouts, ONNX Runtime's NCHWc convolutions; other counts take slower paths — 31 input and
    output channels took 1.5× the time of 32 in eager PyTorch on 2 AVX-512 cores), so multiples of
    16 run fast on both; GPUs' tensor cores take half-precision channels in multiples of 8."""
    return 8 if device.type == "cuda" else 16
