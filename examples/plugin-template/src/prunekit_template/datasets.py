"""A generated dataset: noisy images of stripes, the stripes to segment. Nothing is downloaded."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prunekit.plugin import DataSplits, Spec, field, hookimpl


class Stripes(torch.utils.data.Dataset):
    """Item i of split s is drawn from a generator seeded with (seed, s, i): the same every time."""

    def __init__(self, length: int, size: int, seed: int, split: int) -> None:
        self.length, self.size, self.seed, self.split = length, size, seed, split

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = torch.Generator().manual_seed((self.seed * 1_000_003 + self.split) * 1_000_003 + index)
        period = int(torch.randint(3, 7, (), generator=rng))
        rows = torch.arange(self.size)[:, None].expand(self.size, self.size)
        target = ((rows // period) % 2).long()
        image = target.float()[None] + 0.3 * torch.randn(1, self.size, self.size, generator=rng)
        return {"image": image, "target": target}


@dataclass
class StripesArgs:
    n_train: int = field(32, min=1)
    n_val: int = field(8, min=0)
    size: int = field(16, min=8)
    seed: int = field(0, min=0)


def build(n_train: int = 32, n_val: int = 8, size: int = 16, seed: int = 0) -> DataSplits:
    return DataSplits(
        Stripes(n_train, size, seed, 0),
        Stripes(n_val, size, seed, 1),
        n_classes=2,
        in_channels=1,
        class_names=("gap", "stripe"),
        task="segmentation",
    )


@hookimpl
def prunekit_datasets() -> list[Spec]:
    return [Spec("stripes", build, "noisy horizontal stripes to segment, 2 classes", StripesArgs)]
