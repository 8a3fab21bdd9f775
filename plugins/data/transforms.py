"""Image and mask transforms shared by the dataset plugins, configured by a dict::

    {"resize": [H, W] or None, "clahe": True, "hflip": 0.0, "vflip": 0.0}

Order: resize (image bilinear, mask nearest) → contrast (CLAHE, or a linear map of 0..255) to
[-1, 1] → random flips of image and mask together. Resize and contrast are deterministic and
apply to every item; flips apply to training items only, drawn from a generator the dataset
passes in (see :func:`flip_rng`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from prunekit.plugin import ConfigError, suggest

#: The original system's (RITnet's) CLAHE settings: OpenCV's clipLimit=1.5, tileGridSize=(8, 8).
CLAHE_TILES = (8, 8)
CLAHE_CLIP_LIMIT = 1.5
_KEYS = ("clahe", "hflip", "resize", "vflip")
_FLIP_STREAM = 0xF11B  # keeps flip draws apart from any other stream seeded with the same seed


@dataclass(frozen=True)
class Transforms:
    """Validated transform settings; call it on one ``(image, mask)`` pair."""

    resize: tuple[int, int] | None = None
    clahe: bool = True
    hflip: float = 0.0
    vflip: float = 0.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, where: str = "transforms") -> Transforms:
        """Parse ``config`` (``None`` means all defaults); ``where`` prefixes error messages."""
        if config is None:
            return cls()
        if not isinstance(config, Mapping):
            raise ConfigError(f"{where}: must be a mapping of {', '.join(_KEYS)}, got {config!r}")
        for key in config:
            if key not in _KEYS:
                raise ConfigError(f"{where}: unknown key {key!r}; {suggest(str(key), _KEYS)}")
        return cls(
            resize=_size_or_none(config.get("resize"), f"{where}.resize"),
            clahe=_flag(config.get("clahe", True), f"{where}.clahe"),
            hflip=_probability(config.get("hflip", 0.0), f"{where}.hflip"),
            vflip=_probability(config.get("vflip", 0.0), f"{where}.vflip"),
        )

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``image``: uint8 H×W or H×W×C; ``mask``: integer H×W. Flips are drawn from ``rng``
        (``None``: no flips, as for validation items). Returns ``{"image": C×H×W float32 in
        [-1, 1], "target": H×W int64}``."""
        if self.resize is not None:
            image, mask = resize_image(image, self.resize), resize_mask(mask, self.resize)
        contrasted = clahe(image) if self.clahe else image
        scaled = contrasted.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        if rng is not None:
            scaled, mask = self._flip(scaled, mask, rng)
        channels = scaled[None] if scaled.ndim == 2 else scaled.transpose(2, 0, 1)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(channels, dtype=np.float32)),
            "target": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)),
        }

    def _flip(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        # Both draws always happen, so hflip's outcome does not depend on vflip's setting.
        horizontal, vertical = rng.random(2) < (self.hflip, self.vflip)
        if horizontal:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if vertical:
            image, mask = image[::-1], mask[::-1]
        return image, mask


def flip_rng(seed: int, index: int, epoch: int = 0) -> np.random.Generator:
    """The generator for item ``index``'s flips: a pure function of the dataset's seed, the
    index and the epoch, so results do not depend on worker count or loading order. The run's
    loader calls the dataset's ``set_epoch`` with each epoch's seed."""
    return np.random.default_rng([seed, _FLIP_STREAM, epoch, index])


def clahe(image: np.ndarray, tiles: tuple[int, int] = CLAHE_TILES, clip_limit: float = CLAHE_CLIP_LIMIT) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a uint8 image (H×W, or H×W×C with each
    channel equalised on its own); uint8 result.

    Zuiderveld, "Contrast Limited Adaptive Histogram Equalization", Graphics Gems IV (1994): one
    clipped-histogram mapping per tile, bilinear interpolation between the mappings of the four
    nearest tile centres. The integer details (clip limit, redistribution of the clipped excess,
    rounding) follow OpenCV's ``createCLAHE``, which the original system used, so the images a
    model sees are the same as there.
    """
    if image.dtype != np.uint8:
        raise TypeError(f"clahe: needs a uint8 image, got {image.dtype}")
    if image.ndim == 3:
        return np.stack([clahe(image[..., c], tiles, clip_limit) for c in range(image.shape[2])], axis=-1)
    rows, cols = min(tiles[0], image.shape[0]), min(tiles[1], image.shape[1])
    luts, tile_h, tile_w = _tile_mappings(image, rows, cols, clip_limit)
    y0, y1, wy = _neighbours(image.shape[0], tile_h, rows)
    x0, x1, wx = _neighbours(image.shape[1], tile_w, cols)
    value = image.astype(np.int64)

    def mapped(tile_row: np.ndarray, tile_col: np.ndarray) -> np.ndarray:
        return np.take(luts, (tile_row[:, None] * cols + tile_col) * 256 + value)

    top = mapped(y0, x0) * (1 - wx) + mapped(y0, x1) * wx
    bottom = mapped(y1, x0) * (1 - wx) + mapped(y1, x1) * wx
    return np.rint(top * (1 - wy[:, None]) + bottom * wy[:, None]).astype(np.uint8)


def _tile_mappings(image: np.ndarray, rows: int, cols: int, clip_limit: float) -> tuple[np.ndarray, int, int]:
    """Per-tile lookup tables, flat (tile ``r, c`` at ``(r * cols + c) * 256``; float32 holding
    integers 0..255), and the tile size."""
    height, width = image.shape
    # Pad to whole tiles by mirroring (BORDER_REFLECT_101) so border tiles are full. OpenCV pads
    # both axes by (tiles - size % tiles) as soon as either needs it, which adds a whole tile row
    # or column to an axis that divides evenly; done the same here so outputs match.
    pad_h, pad_w = (rows - height % rows, cols - width % cols) if height % rows or width % cols else (0, 0)
    padded = np.pad(image, ((0, pad_h), (0, pad_w)), mode="reflect")
    tile_h, tile_w = padded.shape[0] // rows, padded.shape[1] // cols
    tile_of = padded.reshape(rows, tile_h, cols, tile_w).transpose(0, 2, 1, 3).reshape(rows * cols, -1)
    codes = tile_of.astype(np.int64) + 256 * np.arange(rows * cols)[:, None]
    hist = np.bincount(codes.ravel(), minlength=256 * rows * cols).reshape(rows * cols, 256)
    area = tile_h * tile_w
    hist = _clip_histograms(hist, max(int(clip_limit * area / 256), 1))
    luts = np.rint(np.cumsum(hist, axis=1) * np.float32(255 / area)).clip(0, 255)
    return luts.astype(np.float32).ravel(), tile_h, tile_w


def _clip_histograms(hist: np.ndarray, limit: int) -> np.ndarray:
    """Clip each row at ``limit`` and give the excess back: an equal share to every bin, then one
    more count to every ``256 // residual``-th bin from the first, until the residual is used up."""
    excess = np.maximum(hist - limit, 0).sum(axis=1, keepdims=True)
    share, residual = np.divmod(excess, 256)
    step = np.maximum(256 // np.maximum(residual, 1), 1)
    bins = np.arange(256)
    extra = (bins % step == 0) & (bins // step < residual)
    return np.minimum(hist, limit) + share + extra


def _neighbours(length: int, tile: int, n_tiles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pixel along one axis: the two tiles whose centres enclose it and the weight of the
    second; beyond the outermost centres both indices are that tile (no extrapolation). Like
    OpenCV, tile ``t``'s centre sits at pixel ``(t + 0.5) * tile``, pixel ``i`` at ``i``."""
    position = np.arange(length) / tile - 0.5
    low = np.floor(position)
    weight = (position - low).astype(np.float32)
    low = low.astype(np.int64)
    return np.clip(low, 0, n_tiles - 1), np.clip(low + 1, 0, n_tiles - 1), weight


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a uint8 image to ``size = (height, width)``."""
    if image.shape[:2] == tuple(size):
        return image
    resized = Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a class-index mask (sampled at pixel centres, no new values)."""
    if mask.shape == tuple(size):
        return mask
    rows = ((np.arange(size[0]) + 0.5) * mask.shape[0] / size[0]).astype(np.int64)
    cols = ((np.arange(size[1]) + 0.5) * mask.shape[1] / size[1]).astype(np.int64)
    return mask[rows[:, None], cols]


def _size_or_none(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    return parse_size(value, where)


def parse_size(value: Any, where: str, minimum: int = 1) -> tuple[int, int]:
    """``[height, width]`` as a tuple of two ints ≥ ``minimum``, or a ConfigError naming ``where``."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(is_int(v) and v >= minimum for v in value)
    if not ok:
        raise ConfigError(f"{where}: must be [height, width], two integers ≥ {minimum}, got {value!r}")
    return int(value[0]), int(value[1])


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    return value


def _probability(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{where}: must be a probability between 0 and 1, got {value!r}")
    return float(value)


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
