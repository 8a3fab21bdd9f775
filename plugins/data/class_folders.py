"""The classification layout of ``image_folder``: ``root/train/<class>/*`` and
``root/val/<class>/*`` (.png, .jpg, .jpeg), one folder per class, classes in sorted order; items
``{"image": C×H×W float in [-1, 1], "label": int64}``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from prunekit.plugin import DataError

from .image_files import load_image
from .transforms import Transforms, flip_rng

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def is_class_layout(root: Path) -> bool:
    """``root/train`` holds class folders (not the ``images``/``masks`` of segmentation)."""
    train = root / "train"
    return train.is_dir() and not (train / "images").is_dir() and any(p.is_dir() for p in train.iterdir())


def find_classes(root: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """The class names (``train``'s sub-folders) and the (image, class) items of each split."""
    train, val = root / "train", root / "val"
    if not val.is_dir():
        raise DataError(f"image_folder: folder not found: '{val}' (train/ and val/ come together)")
    classes = tuple(sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith(".")))
    extra = sorted(p.name for p in val.iterdir() if p.is_dir() and p.name not in classes)
    if extra:
        raise DataError(
            f"image_folder: val/ has classes train/ lacks: {', '.join(extra)} (train/ has {', '.join(classes)})"
        )
    return classes, _items(train, classes), _items(val, classes)


def _items(folder: Path, classes: tuple[str, ...]) -> list[tuple[Path, int]]:
    items = [
        (path, label)
        for label, name in enumerate(classes)
        if (folder / name).is_dir()
        for path in sorted((folder / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")
    ]
    if not items:
        raise DataError(f"image_folder: no images (.png, .jpg, .jpeg) in the class folders of '{folder}'")
    return items


class ClassFolderDataset(torch.utils.data.Dataset):
    """Images read on demand; flips (the training split) as in the segmentation layout."""

    def __init__(
        self,
        items: list[tuple[Path, int]],
        channels: int,
        transforms: Transforms,
        seed: int,
        augment: bool,
    ) -> None:
        self.items, self.channels, self.transforms = items, channels, transforms
        self.seed, self.augment, self.epoch = seed, augment, 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path, label = self.items[index]
        image = load_image(path, self.channels)
        rng = flip_rng(self.seed, index, self.epoch) if self.augment else None
        item = self.transforms(image, np.zeros(image.shape[:2], dtype=np.int64), rng)
        return {"image": item["image"], "label": torch.tensor(label)}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
