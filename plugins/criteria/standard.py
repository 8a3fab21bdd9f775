"""Built-in importance criteria. Higher scores mean more important channels.

Activation statistics stream over the calibration pass: memory depends on the layer's size,
never on the number of batches. ``observe`` receives a layer's raw output with the channels on
dim 1 (N×C×…), and, for gradient criteria, the loss gradient with respect to it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from prunekit.plugin import ConfigError, NoArgs, ScoredLayer, Spec, field, hookimpl


def _check_p(p: int) -> int:
    if p not in (1, 2):
        raise ConfigError(f"criterion p: {p!r} is not allowed; valid: 1, 2")
    return p


class _Static:
    """Criteria that read the model only: nothing to accumulate during calibration."""

    needs = frozenset({"weights"})

    def reset(self) -> None:
        pass

    def observe(self, layer: str, activation: torch.Tensor, gradient: torch.Tensor | None) -> None:
        pass


class WeightNorm(_Static):
    """‖W_k‖_p of the weights producing channel k (Li et al. 2017, "Pruning Filters for
    Efficient ConvNets"). Layer scale differences are left to the per-layer normalisation."""

    def __init__(self, p: int = 1) -> None:
        self.p = _check_p(p)

    def score(self, layer: ScoredLayer) -> torch.Tensor | None:
        rows = layer.weight_rows() if layer.role != "norm" else None
        return None if rows is None else rows.double().norm(p=self.p, dim=1)


class _Streaming:
    """Shared bookkeeping of criteria that accumulate statistics per layer."""

    needs = frozenset({"activations"})

    def __init__(self) -> None:
        self.stats: dict[str, list] = {}

    def reset(self) -> None:
        self.stats = {}

    def score(self, layer: ScoredLayer) -> torch.Tensor | None:
        return self.finish(*self.stats[layer.name]) if layer.name in self.stats else None

    def finish(self, total: torch.Tensor, count: int) -> torch.Tensor:
        """Scores from the accumulated statistics of one layer."""
        raise NotImplementedError

    def all_reduce(self, sum_: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum the statistics of all processes (under torchrun), so every rank scores alike."""
        for layer in sorted(self.stats):
            self.stats[layer] = [
                sum_(v) if torch.is_tensor(v) else int(sum_(torch.tensor([v], dtype=torch.float64))[0])
                for v in self.stats[layer]
            ]

    def _add(self, layer: str, *values: torch.Tensor | int) -> None:
        if layer in self.stats:
            self.stats[layer] = [a + b for a, b in zip(self.stats[layer], values)]
        else:
            self.stats[layer] = list(values)


class ActivationDeviation(_Streaming):
    """IPAD's activation-deviation criterion (Vitek et al. 2023).

    For a layer's output A (N×C×H×W) over the whole calibration set: the mean map of each channel
    mean_k = E_n[A_nk], the layer's mean map mean = (1/C) Σ_k mean_k, the deviation D_k = mean_k − mean;
    score = mean(|D_k|) for p = 1 or sqrt(mean(D_k²)) (the L2 norm divided by sqrt(H·W)) for p = 2.
    A channel whose average response barely differs from the layer's average carries little
    information. The running sum of maps makes memory C×H×W per layer, whatever the batch count.
    """

    def __init__(self, p: int = 1) -> None:
        super().__init__()
        self.p = _check_p(p)

    def observe(self, layer: str, activation: torch.Tensor, gradient: torch.Tensor | None) -> None:
        self._add(layer, activation.detach().double().sum(0), activation.shape[0])

    def finish(self, total: torch.Tensor, count: int) -> torch.Tensor:
        mean_k = total / count
        deviation = (mean_k - mean_k.mean(0, keepdim=True)).reshape(len(mean_k), -1)  # N×C (Linear): one value
        return deviation.abs().mean(1) if self.p == 1 else deviation.pow(2).mean(1).sqrt()


class ActivationMean(_Streaming):
    """Mean squared activation of each channel over the calibration set."""

    def observe(self, layer: str, activation: torch.Tensor, gradient: torch.Tensor | None) -> None:
        a = activation.detach().double().transpose(0, 1).flatten(1)
        self._add(layer, a.pow(2).sum(1), a.shape[1])

    def finish(self, total: torch.Tensor, count: int) -> torch.Tensor:
        return total / count


class Taylor(_Streaming):
    """First-order Taylor importance (Molchanov et al. 2017): |Σ_spatial a·∂L/∂a| per sample,
    averaged over the calibration samples — the loss change if the channel were zeroed."""

    needs = frozenset({"activations", "gradients"})

    def observe(self, layer: str, activation: torch.Tensor, gradient: torch.Tensor | None) -> None:
        if gradient is None:
            return
        product = activation.detach().double() * gradient.detach().double()
        product = product.reshape(*product.shape[:2], -1).sum(2)
        self._add(layer, product.abs().sum(0), activation.shape[0])

    def finish(self, total: torch.Tensor, count: int) -> torch.Tensor:
        return total / count


class BnScale(_Static):
    """|γ| of the norm layer following each channel (Liu et al. 2017, "Network Slimming")."""

    def score(self, layer: ScoredLayer) -> torch.Tensor | None:
        rows = layer.weight_rows() if layer.role == "norm" else None
        return None if rows is None else rows[:, 0].double().abs()


class Random(_Static):
    """Uniform random scores, a baseline. Deterministic given the seed, the layer and its size."""

    needs = frozenset()

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def score(self, layer: ScoredLayer) -> torch.Tensor | None:
        rows = layer.weight_rows()
        if rows is None or layer.role == "norm":
            return None
        key = zlib.crc32(f"{self.seed}:{layer.name}:{len(rows)}".encode())
        return torch.rand(len(rows), generator=torch.Generator().manual_seed(key), dtype=torch.float64)


@dataclass
class NormArgs:
    p: Literal[1, 2] = field(1, doc="the norm: 1 or 2")


@dataclass
class SeedArgs:
    seed: int = field(0, min=0)


@hookimpl
def prunekit_criteria() -> list[Spec]:
    return [
        Spec("weight_norm", WeightNorm, "L1/L2 norm of each filter's weights; arg p (1)", NormArgs),
        Spec("activation_deviation", ActivationDeviation, "IPAD's activation deviation; arg p (1)", NormArgs),
        Spec("activation_mean", ActivationMean, "mean squared activation", NoArgs),
        Spec("taylor", Taylor, "first-order Taylor |a·dL/da|", NoArgs),
        Spec("bn_scale", BnScale, "|gamma| of the following norm layer", NoArgs),
        Spec("random", Random, "random baseline; arg seed (0)", SeedArgs),
    ]
