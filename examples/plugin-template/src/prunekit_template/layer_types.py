"""A layer prunekit does not know, and the layer type that counts and cuts it.

``ScaledConv2d`` is a 3×3 convolution whose output channels each have a learned scale: a
producer (every output channel reads every input channel), with parameters that depend on both
channel counts.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.plugin import Flow, LayerShape, LayerType, cut_parameter, hookimpl, numel


class ScaledConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3) * (2 / (9 * in_channels)) ** 0.5)
        self.scale = nn.Parameter(torch.ones(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=1) * self.scale.view(1, -1, 1, 1)


class ScaledConvType(LayerType):
    """How prunekit counts and cuts a ``ScaledConv2d``."""

    name, module, kind = "scaled_conv2d", ScaledConv2d, "conv"  # kind "conv": always counted as MACs

    def flow(self, module: Any) -> Flow:
        return Flow.PRODUCER  # output channel j reads every input channel

    def macs(self, module: Any, shape: LayerShape) -> int:
        # one multiply-add per kernel weight per output element: prunekit's convolution convention,
        # which leaves out element-wise work (bias, this scale) as PyTorch's FLOP counter does
        return numel(shape.output) * shape.in_channels * 9

    def params(self, module: Any, shape: LayerShape) -> int:
        return shape.out_channels * shape.in_channels * 9 + shape.out_channels

    def weight_rows(self, module: Any) -> torch.Tensor:
        return module.weight.detach().flatten(1)  # one row per output channel, for weight criteria

    def prune_out(self, module: Any, keep: torch.Tensor) -> None:
        cut_parameter(module, "weight", keep, 0)
        cut_parameter(module, "scale", keep, 0)
        module.out_channels = len(keep)  # keep the module's own attributes true

    def prune_in(self, module: Any, keep: torch.Tensor) -> None:
        cut_parameter(module, "weight", keep, 1)
        module.in_channels = len(keep)


@hookimpl
def prunekit_layer_types() -> list[LayerType]:
    return [ScaledConvType()]
