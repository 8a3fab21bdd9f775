"""``image_folder``: segmentation or classification data read from local folders.

Segmentation: ``root/images/*.png|jpg|jpeg`` and ``root/masks/*.png``, paired by file stem, split
into train and val at random (``val_fraction``, ``seed``); or, when ``root/train`` and
``root/val`` exist, each of them holding ``images/`` and ``masks/``, split by those folders.
Classification: ``root/train/<class>/*`` and ``root/val/<class>/*`` (see :mod:`.class_folders`). Masks hold class
indices (single-channel PNG: mode L, P, I or 1) or are colour-coded, with ``colors`` mapping each
colour (``"#rrggbb"`` or ``[r, g, b]``) to a class index. Folder structure and pairing are
checked when the dataset is built; each file's contents when its item is loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from prunekit.plugin import ConfigError, DataError, DataSplits, Spec, field, hookimpl

from .class_folders import ClassFolderDataset, find_classes, is_class_layout
from .image_files import load_image, open_image
from .transforms import Transforms, flip_rng, is_int, parse_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MASK_SUFFIX = ".png"  # masks must be lossless
INDEX_MODES = ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N")
_SPLIT_STREAM = 0x5B1  # keeps the train/val draw apart from the flips drawn with the same seed

Pair = tuple[Path, Path]


class FolderDataset(torch.utils.data.Dataset):
    """Image/mask pairs read on demand: ``{"image": C×H×W float in [-1, 1], "target": H×W int64}``.

    Flips (``augment=True``, the training split) come from :func:`flip_rng` with the dataset seed
    and the item index; call ``set_epoch(e)`` to draw new flips each epoch.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        n_classes: int,
        channels: int,
        colors: dict[int, int] | None,
        transforms: Transforms,
        seed: int,
        augment: bool,
    ) -> None:
        self.pairs, self.n_classes, self.channels, self.colors = list(pairs), n_classes, channels, colors
        self.transforms, self.seed, self.augment = transforms, seed, augment
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        image = load_image(image_path, self.channels)
        mask = load_mask(mask_path, self.n_classes, self.colors)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"image_folder: image '{image_path}' is {_hw(image.shape)} but its mask "
                f"'{mask_path}' is {_hw(mask.shape)} (height×width)"
            )
        rng = flip_rng(self.seed, index, self.epoch) if self.augment else None
        return self.transforms(image, mask, rng)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def load_mask(path: Path, n_classes: int, colors: dict[int, int] | None) -> np.ndarray:
    """An int64 H×W class-index mask; colours are mapped through ``colors`` (packed 0xRRGGBB ->
    class) when it is given, otherwise the file must hold class indices below ``n_classes``."""
    mask = open_image(path, "mask")
    if colors is not None:
        return _map_colors(np.asarray(mask.convert("RGB")), colors, path)
    if mask.mode not in INDEX_MODES:
        raise DataError(
            f"image_folder: mask '{path}' has mode {mask.mode}; index masks are "
            f"single-channel (L, P, I), colour-coded masks need the colors argument"
        )
    values = np.asarray(mask).astype(np.int64)
    bad = values[(values < 0) | (values >= n_classes)]
    if bad.size:
        raise DataError(
            f"image_folder: mask '{path}' holds class value {bad.max()}, but n_classes is "
            f"{n_classes} (values 0..{n_classes - 1})"
        )
    return values


def _map_colors(rgb: np.ndarray, colors: dict[int, int], path: Path) -> np.ndarray:
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    keys = np.array(sorted(colors), dtype=np.int64)
    classes = np.array([colors[k] for k in keys.tolist()], dtype=np.int64)
    where = np.minimum(np.searchsorted(keys, codes), len(keys) - 1)
    unknown = keys[where] != codes
    if unknown.any():
        row, col = (int(i) for i in np.argwhere(unknown)[0])
        known = ", ".join(_hex(k) for k in keys.tolist())
        raise DataError(
            f"image_folder: mask '{path}' has colour {_hex(int(codes[row, col]))} at row {row}, "
            f"column {col}, which is not in colors ({known})"
        )
    return classes[where]


def find_pairs(folder: Path) -> list[Pair]:
    """The (image, mask) pairs of ``folder/images`` and ``folder/masks``, sorted by stem; every
    image needs a mask and every mask an image."""
    images = _by_stem(_subfolder(folder, "images"), IMAGE_SUFFIXES, "images")
    masks = _by_stem(_subfolder(folder, "masks"), (MASK_SUFFIX,), "masks")
    for stem, image in images.items():
        if stem not in masks:
            raise DataError(
                f"image_folder: image '{image}' has no mask (expected '{folder / 'masks' / (stem + MASK_SUFFIX)}')"
            )
    for stem, mask in masks.items():
        if stem not in images:
            raise DataError(
                f"image_folder: mask '{mask}' has no image (expected {stem}.png, .jpg or "
                f".jpeg in '{folder / 'images'}')"
            )
    if not images:
        raise DataError(f"image_folder: no images (.png, .jpg, .jpeg) in '{folder / 'images'}'")
    return [(images[stem], masks[stem]) for stem in sorted(images)]


def _subfolder(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_dir():
        raise DataError(f"image_folder: folder not found: '{path}'")
    return path


def _by_stem(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in suffixes or not path.is_file():
            continue
        if path.stem in found:
            raise DataError(f"image_folder: two {what} named {path.stem!r}: '{found[path.stem]}' and '{path}'")
        found[path.stem] = path
    return found


def split_pairs(pairs: list[Pair], val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """A seeded random split; val gets ``round(val_fraction · n)`` pairs, at least one, and train
    keeps at least one."""
    if len(pairs) < 2:
        raise DataError(
            f"image_folder: need at least 2 image/mask pairs to split off a val set, "
            f"found {len(pairs)} ('{pairs[0][0]}')"
        )
    n_val = min(max(round(val_fraction * len(pairs)), 1), len(pairs) - 1)
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(len(pairs))
    val = set(order[:n_val].tolist())
    return ([p for i, p in enumerate(pairs) if i not in val], [p for i, p in enumerate(pairs) if i in val])


def parse_colors(colors: Any, n_classes: int) -> dict[int, int] | None:
    """``colors`` (a mapping, or a list of ``[colour, class]`` pairs, colours as ``"#rrggbb"`` or
    ``[r, g, b]``) as packed 0xRRGGBB -> class index."""
    if colors is None:
        return None
    items = list(colors.items()) if isinstance(colors, Mapping) else colors
    if not isinstance(items, (list, tuple)) or not items:
        raise ConfigError(f"image_folder: colors must map '#rrggbb' or [r, g, b] to class indices, got {colors!r}")
    parsed: dict[int, int] = {}
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ConfigError(f"image_folder: colors: expected [colour, class] pairs, got {item!r}")
        colour, label = _colour_code(item[0]), item[1]
        if not is_int(label) or not 0 <= label < n_classes:
            raise ConfigError(
                f"image_folder: colors: class of {item[0]!r} must be an integer 0..{n_classes - 1}, got {label!r}"
            )
        if colour in parsed:
            raise ConfigError(f"image_folder: colors: colour {_hex(colour)} is given twice")
        parsed[colour] = int(label)
    return parsed


def _colour_code(colour: Any) -> int:
    if isinstance(colour, str) and len(colour) == 7 and colour[0] == "#":
        try:
            return int(colour[1:], 16)
        except ValueError:
            pass
    elif isinstance(colour, (tuple, list)) and len(colour) == 3 and all(is_int(c) and 0 <= c <= 255 for c in colour):
        return (int(colour[0]) << 16) | (int(colour[1]) << 8) | int(colour[2])
    raise ConfigError(f"image_folder: colors: bad colour {colour!r}; write '#rrggbb' or [r, g, b] with 0..255")


def _hex(code: int) -> str:
    return f"#{code:06x}"


def _hw(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}×{shape[1]}"


def build(
    root: str | Path,
    n_classes: int | None = None,
    size: Any = None,
    channels: int = 1,
    colors: Any = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    transforms: dict | None = None,
) -> DataSplits:
    """The ``image_folder`` factory. ``val_fraction`` and ``seed`` choose the random split when
    there are no ``train``/``val`` sub-folders; ``seed`` also draws the training flips. ``size``
    is ``transforms.resize`` under a shorter name. Class folders make it a classification set,
    whose ``n_classes`` is the number of folders (if given, it must agree)."""
    if is_class_layout(Path(root)):
        return _classes(Path(root), n_classes, size, channels, seed, transforms)
    if n_classes is None:
        raise ConfigError("image_folder: n_classes is needed for segmentation masks")
    if not is_int(n_classes) or n_classes < 2:
        raise ConfigError(f"image_folder: n_classes must be an integer ≥ 2, got {n_classes!r}")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ConfigError(f"image_folder: channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ConfigError(
            f"image_folder: val_fraction must be a number between 0 and 1 (exclusive), got {val_fraction!r}"
        )
    if not is_int(seed) or seed < 0:
        raise ConfigError(f"image_folder: seed must be a non-negative integer, got {seed!r}")
    pipeline = _with_size(Transforms.from_config(transforms, "image_folder: transforms"), size)
    color_map = parse_colors(colors, n_classes)
    train, val = _splits(Path(root), val_fraction, seed)
    make = lambda pairs, augment: FolderDataset(pairs, n_classes, channels, color_map, pipeline, seed, augment)
    return DataSplits(
        make(train, True),
        make(val, False),
        n_classes=n_classes,
        in_channels=channels,
        class_names=tuple(f"class_{i}" for i in range(n_classes)),
        task="segmentation",
    )


def _classes(
    root: Path, n_classes: int | None, size: Any, channels: int, seed: int, transforms: dict | None
) -> DataSplits:
    names, train, val = find_classes(root)
    if n_classes is not None and n_classes != len(names):
        raise ConfigError(
            f"image_folder: n_classes is {n_classes}, but '{root / 'train'}' has {len(names)} class "
            f"folders ({', '.join(names)})"
        )
    pipeline = _with_size(Transforms.from_config(transforms, "image_folder: transforms"), size)
    make = lambda items, augment: ClassFolderDataset(items, channels, pipeline, seed, augment)
    return DataSplits(
        make(train, True),
        make(val, False),
        n_classes=len(names),
        in_channels=channels,
        class_names=names,
        task="classification",
    )


def _with_size(pipeline: Transforms, size: Any) -> Transforms:
    if size is None:
        return pipeline
    size = parse_size(size, "image_folder: size")
    if pipeline.resize not in (None, size):
        raise ConfigError(
            f"image_folder: size {list(size)} and transforms.resize {list(pipeline.resize)} disagree; give one of them"
        )
    return dataclasses.replace(pipeline, resize=size)


def _splits(root: Path, val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    if not root.is_dir():
        raise DataError(f"image_folder: root folder not found: '{root}'")
    train_dir, val_dir = root / "train", root / "val"
    if train_dir.is_dir() or val_dir.is_dir():
        missing = val_dir if train_dir.is_dir() else train_dir
        if not missing.is_dir():
            raise DataError(f"image_folder: folder not found: '{missing}' (train/ and val/ come together)")
        return find_pairs(train_dir), find_pairs(val_dir)
    return split_pairs(find_pairs(root), val_fraction, seed)


@dataclasses.dataclass
class ImageFolderArgs:
    root: str | Path = field(doc="the folder: images/ + masks/ (or train/, val/ of them), or class folders")
    n_classes: int | None = field(None, min=2, doc="classes of the masks (class folders: their number)")
    size: list[int] | int | None = field(None, doc="[height, width] to resize to (transforms.resize)")
    channels: Literal[1, 3] = field(1, doc="1 (grey) or 3 (RGB)")
    colors: Any = field(None, doc="colour masks: the colour of each class, as [[r, g, b], …] or hex strings")
    val_fraction: float = field(0.2, min=0, max=1, open_min=True, doc="without train/ and val/: the share for val")
    seed: int = field(0, min=0, doc="the random split and the training flips")
    transforms: dict[str, Any] | None = field(None, doc="resize, clahe, hflip, vflip")


@hookimpl
def prunekit_datasets() -> list[Spec]:
    return [
        Spec(
            "image_folder",
            build,
            "segmentation data from root/images + root/masks (or root/train, root/val), or classification "
            "data from root/train/<class>, root/val/<class>; args root, n_classes, size, channels, colors, "
            "val_fraction, seed, transforms",
            ImageFolderArgs,
        )
    ]
