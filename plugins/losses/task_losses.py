"""Task losses for segmentation, as RITnet (Chaudhary et al. 2019) and IPAD train with them:
boundary-weighted cross-entropy, generalised Dice and the surface (boundary) loss.

Each factory builds an ``nn.Module`` whose ``forward(logits, batch)`` takes N×K×H×W logits and
the collated batch (``mask``: N×H×W class indices) and returns a scalar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt
from torch import nn

from prunekit.plugin import Spec, field, hookimpl


def boundary_pixels(mask: torch.Tensor) -> torch.Tensor:
    """True where a pixel's 3×3 neighbourhood holds another class (N×H×W bool).

    Max- and min-pooling pad with -inf, so the image border itself is no boundary.
    """
    m = mask[:, None].float()
    high = F.max_pool2d(m, 3, stride=1, padding=1)
    low = -F.max_pool2d(-m, 3, stride=1, padding=1)
    return (high != low)[:, 0]


class CrossEntropy(nn.Module):
    """Cross-entropy per pixel (segmentation) or per sample (classification), with optional class
    weights, boundary weights and label smoothing.

    Pixel weight w = class_weight[target] · (1 + boundary_weight · B), B = :func:`boundary_pixels`
    (RITnet uses boundary_weight 20; segmentation only). The loss is the weighted mean
    sum(w·ce) / sum(w), the convention of ``F.cross_entropy(weight=...)``: its scale stays that of
    plain CE whatever the share of boundary pixels, so its weight against the other losses does
    not drift. RITnet's own code takes mean(w·ce) instead, which is this value times mean(w).
    ``label_smoothing`` ε spreads ε of the target over all classes (Szegedy et al. 2016).
    """

    class_weights: torch.Tensor | None

    def __init__(
        self, boundary_weight: float = 0.0, class_weights: Sequence[float] | None = None, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.boundary_weight = float(boundary_weight)
        self.label_smoothing = float(label_smoothing)
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)

    def pixel_weights(self, mask: torch.Tensor) -> torch.Tensor:
        w = torch.ones(mask.shape, device=mask.device)
        if self.class_weights is not None:
            w = self.class_weights.to(mask.device)[mask]
        if self.boundary_weight and mask.dim() == 3:  # N×H×W masks have borders; class labels do not
            w = w * (1 + self.boundary_weight * boundary_pixels(mask))
        return w

    def forward(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        mask = batch["target"]
        ce = F.cross_entropy(logits, mask, reduction="none", label_smoothing=self.label_smoothing)
        w = self.pixel_weights(mask).to(ce.dtype)
        return (w * ce).sum() / w.sum()


class GeneralizedDice(nn.Module):
    """Generalised Dice loss (Sudre et al. 2017) on softmax probabilities, per sample,
    averaged over the batch (as RITnet):

        1 − (2 Σ_c w_c Σ_x p·t + ε) / (Σ_c w_c Σ_x (p + t) + ε),  w_c = 1 / (Σ_x t_c)²

    Only the ratios of the w_c matter, so class volumes are taken as fractions of the image:
    with raw pixel counts the weights (~1/H²W²) would be swamped by ε. A class absent from a
    sample gets the largest weight of the present ones, the guard of NiftyNet's implementation
    (Sudre's group), so false positives on it count like those on the rarest present class
    rather than with an infinite weight.
    """

    def __init__(self, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.epsilon = float(epsilon)

    def forward(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        probs = logits.softmax(1).flatten(2)
        target = F.one_hot(batch["target"].flatten(1), logits.shape[1]).transpose(1, 2).to(probs.dtype)
        weights = class_weights(target.mean(2))
        intersection = (weights * (probs * target).sum(2)).sum(1)
        union = (weights * (probs + target).sum(2)).sum(1)
        return (1 - (2 * intersection + self.epsilon) / (union + self.epsilon)).mean()


def class_weights(volume: torch.Tensor) -> torch.Tensor:
    """1 / volume² per class (N×K); absent classes get the row's largest present weight."""
    weights = volume.pow(-2)
    absent = volume == 0
    finite = weights.masked_fill(absent, 0)
    return torch.where(absent, finite.amax(1, keepdim=True), finite)


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Signed distance map of a boolean class mask (Kervadec et al. 2019, as RITnet computes it):
    φ = edt(¬M)·¬M − (edt(M) − 1)·M — distance to the class outside it (positive), minus the
    distance to the outside inside it, less one so the class's own border pixels are 0.

    An absent or image-filling class has no border; its map is 0 (no pull either way).
    """
    if mask.all() or not mask.any():
        return np.zeros(mask.shape)
    outside = ~mask
    return distance_transform_edt(outside) * outside - (distance_transform_edt(mask) - 1) * mask


def distance_maps(mask: torch.Tensor, n_classes: int, normalize: bool) -> torch.Tensor:
    """Signed distance maps N×K×H×W of every class of every sample, computed on the CPU."""
    masks = mask.cpu().numpy()
    maps = np.stack([[signed_distance(m == c) for c in range(n_classes)] for m in masks])
    if normalize:
        h, w = masks.shape[1:]
        maps /= max(np.hypot(h - 1, w - 1), 1.0)
    return torch.from_numpy(maps)


class Surface(nn.Module):
    """Boundary loss (Kervadec et al. 2019) as RITnet uses it: mean over pixels, classes and
    batch of softmax_c · φ_c, with φ negative inside class c and positive outside it, so the
    loss falls as probability mass moves inside the true regions.

    ``batch["dist"]`` (N×K×H×W), when the dataset provides it, is used as is; otherwise the maps
    are computed from the mask, divided by the image diagonal when ``normalize`` (as RITnet does,
    so the loss scale does not depend on the resolution).
    """

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize

    def forward(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        dist = batch.get("dist")
        if dist is None:
            dist = distance_maps(batch["target"], logits.shape[1], self.normalize)
        return (logits.softmax(1) * dist.to(logits.device, logits.dtype)).mean()


@dataclass
class CrossEntropyArgs:
    boundary_weight: float = field(0.0, min=0, doc="extra weight of pixels at class borders (RITnet: 20)")
    class_weights: list[float] | None = field(None, doc="a weight per class")
    label_smoothing: float = field(0.0, min=0, max=1, doc="share of the target spread over all classes")


@dataclass
class DiceArgs:
    epsilon: float = field(1e-5, min=0, doc="smoothing of the ratio")


@dataclass
class SurfaceArgs:
    normalize: bool = field(True, doc="divide distances by the image diagonal")


@hookimpl
def prunekit_task_losses() -> list[Spec]:
    return [
        Spec(
            "cross_entropy",
            CrossEntropy,
            "cross-entropy per pixel or sample; class weights, boundary weights (RITnet: 20), label smoothing",
            CrossEntropyArgs,
        ),
        Spec("generalized_dice", GeneralizedDice, "generalised Dice loss (Sudre et al. 2017)", DiceArgs),
        Spec("surface", Surface, "boundary loss on signed distance maps (Kervadec et al. 2019)", SurfaceArgs),
    ]
