"""``synthetic_shapes``: generated images of one shape each, for classification offline.

Classes, in order: disc, square, triangle, ring, cross, stripes (the first ``n_classes``). Each
image holds one shape of random size, place and rotation and random brightness, over a smooth
random background with pixel noise. Item i of a split is drawn from
``np.random.default_rng([seed, split, i])``: the same every time, train and val disjoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from prunekit.plugin import ConfigError, DataSplits, Spec, field, hookimpl

CLASSES = ("disc", "square", "triangle", "ring", "cross", "stripes")
SPLITS = {"train": 0, "val": 1}


def _inside(name: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Soft membership of each pixel, in the shape's own coordinates (radius 1)."""
    if name == "disc":
        d = 1 - np.hypot(u, v)
    elif name == "square":
        d = 1 - np.maximum(abs(u), abs(v))
    elif name == "triangle":
        d = np.minimum.reduce([v + 0.5, 0.5 - v - 1.7 * u, 0.5 - v + 1.7 * u])
    elif name == "ring":
        r = np.hypot(u, v)
        d = 0.3 - abs(r - 0.7)
    elif name == "cross":
        d = np.maximum(0.3 - abs(u), 0.3 - abs(v)) * (np.maximum(abs(u), abs(v)) < 1)
    else:  # stripes: a texture across the whole patch
        period = rng.uniform(0.35, 0.6)
        d = (np.cos(np.pi * u / period) * 0.5) * (np.maximum(abs(u), abs(v)) < 1)
    return np.clip(d * 8, 0, 1)


def draw(
    seed: int, split: str, index: int, size: tuple[int, int], n_classes: int, noise: float
) -> tuple[np.ndarray, int]:
    """One grey image in [-1, 1] and its class."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    label = int(rng.integers(n_classes))
    h, w = size
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    radius = rng.uniform(0.22, 0.42) * min(h, w)
    cy, cx = rng.uniform(radius, h - radius), rng.uniform(radius, w - radius)
    angle = rng.uniform(0, 2 * np.pi)
    y, x = (rows - cy) / radius, (cols - cx) / radius
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    shape = _inside(CLASSES[label], u, v, rng)
    background = rng.uniform(-0.6, 0.2) + 0.2 * np.sin(rows / h * rng.uniform(1, 4) + cols / w * rng.uniform(1, 4))
    foreground = rng.uniform(0.3, 0.9) * rng.choice([-1, 1])
    image = background + foreground * shape + rng.normal(0, noise, size)
    return np.clip(image, -1, 1).astype(np.float32), label


class SyntheticShapes(torch.utils.data.Dataset):
    def __init__(
        self, split: str, length: int, size: tuple[int, int], n_classes: int, channels: int, seed: int, noise: float
    ) -> None:
        self.split, self.length, self.size, self.n_classes = split, length, size, n_classes
        self.channels, self.seed, self.noise = channels, seed, noise

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        image, label = draw(self.seed, self.split, index, self.size, self.n_classes, self.noise)
        pixels = torch.from_numpy(image)[None].expand(self.channels, *self.size).contiguous()
        return {"image": pixels, "label": torch.tensor(label)}


@dataclass
class ShapesArgs:
    size: list[int] = field([32, 32], doc="[height, width], each at least 16")
    n_train: int = field(512, min=1)
    n_val: int = field(128, min=0)
    n_classes: int = field(4, min=2, max=len(CLASSES), doc=f"the first n of {', '.join(CLASSES)}")
    channels: int = field(1, min=1, doc="1 (grey) or more copies of it")
    noise: float = field(0.15, min=0, doc="standard deviation of the pixel noise")
    seed: int = field(0, min=0)

    def check(self, path: str) -> None:
        if len(self.size) != 2 or min(self.size) < 16:
            raise ConfigError(f"{path}.size: {self.size!r} must be [height, width], each at least 16")


def build(**args: Any) -> DataSplits:
    a = ShapesArgs(**args)
    size = (a.size[0], a.size[1])
    splits = {
        name: SyntheticShapes(name, n, size, a.n_classes, a.channels, a.seed, a.noise)
        for name, n in (("train", a.n_train), ("val", a.n_val))
    }
    return DataSplits(
        splits["train"],
        splits["val"],
        n_classes=a.n_classes,
        in_channels=a.channels,
        class_names=CLASSES[: a.n_classes],
        task="classification",
    )


@hookimpl
def prunekit_datasets() -> list[Spec]:
    return [
        Spec(
            "synthetic_shapes",
            build,
            "generated images of shapes for classification; args size, n_train, "
            "n_val, n_classes (4), channels, noise, seed",
            ShapesArgs,
        )
    ]
