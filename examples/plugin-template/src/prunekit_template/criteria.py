"""A criterion: the magnitude of each output channel's learned scale (for layers that have one)."""

from __future__ import annotations

import torch

from prunekit.plugin import ScoredLayer, Spec, hookimpl

from .layer_types import ScaledConv2d


class ScaleMagnitude:
    """|scale| of each output channel of a ``ScaledConv2d``; nothing about other layers."""

    needs = frozenset({"weights"})  # reads the model only: no calibration statistics

    def reset(self) -> None:
        pass

    def observe(self, layer: str, activation: torch.Tensor, gradient: torch.Tensor | None) -> None:
        pass

    def score(self, layer: ScoredLayer) -> torch.Tensor | None:
        if not isinstance(layer.module, ScaledConv2d) or layer.role != "out":
            return None
        return layer.module.scale.detach().abs().double()


@hookimpl
def prunekit_criteria() -> list[Spec]:
    return [Spec("scale_magnitude", ScaleMagnitude, "|scale| of each channel of a ScaledConv2d")]
