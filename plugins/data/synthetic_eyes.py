"""``synthetic_eyes``: procedurally generated grey-scale eye images with segmentation masks.

Classes: 0 skin (everything else), 1 sclera, 2 iris, 3 pupil; with ``n_classes=2``: 0 rest,
1 sclera. Each sample is drawn on the fly from ``np.random.default_rng([seed, split, index])``,
so the same (seed, split, index) always gives the same sample and train and val are disjoint
streams. The masks label what is visible: eyelids cover sclera and iris. Eyelashes, specular
reflections, illumination, blur and noise change the image only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from prunekit.plugin import ConfigError, DataSplits, Spec, field, hookimpl

from .transforms import Transforms, flip_rng, is_int, parse_size

CLASS_NAMES = {4: ("skin", "sclera", "iris", "pupil"), 2: ("rest", "sclera")}
SPLITS = {"train": 0, "val": 1}
#: The eye's mean half-width in pixels at the reference size 96×160; other sizes scale it.
_HALF_WIDTH = 60.0
_MIN_SIZE = 16
_EDGE = 0.8  # anti-aliasing width of shape edges, in pixels


@dataclass(frozen=True)
class Eye:
    """One eye's geometry in pixels; ``x``/``y`` are the eye's own axes, turned by ``angle``
    about the centre (``cx``, ``cy``); y grows downwards."""

    cx: float
    cy: float
    angle: float
    half_width: float  # a: the opening spans -a < x < a
    upper: float  # how far the upper lid margin rises above the axis (before skew)
    lower: float
    upper_skew: float
    lower_skew: float
    bluntness: float  # > 0 makes the corners rounder
    iris_x: float
    iris_y: float
    iris_radius: float
    squash_x: float  # foreshortening of the iris as the gaze turns sideways or up/down
    squash_y: float
    pupil_ratio: float  # pupil radius / iris radius: dilation
    pupil_dx: float  # pupil offset from the iris centre, in iris radii
    pupil_dy: float


@dataclass(frozen=True)
class Look:
    """Everything about one sample's appearance that is not geometry."""

    skin: float
    sclera: float
    iris: float
    pupil: float
    iris_contrast: float
    gradient: float
    gradient_angle: float
    blur: float
    noise: float
    gamma: float


def sample_eye(rng: np.random.Generator, height: int, width: int) -> Eye:
    """Draw a random eye that fits an image of this size; one in 16 is nearly closed."""
    a = _HALF_WIDTH * min(width / 160, height / 96) * rng.uniform(0.8, 1.2)
    opening = rng.uniform(0.05, 0.35) if rng.random() < 1 / 16 else rng.uniform(0.35, 1.15)
    iris_x, iris_y = rng.uniform(-0.45, 0.45) * a, rng.uniform(-0.15, 0.12) * a
    return Eye(
        cx=width * (0.5 + rng.uniform(-0.12, 0.12)),
        cy=height * (0.5 + rng.uniform(-0.12, 0.12)),
        angle=rng.uniform(-0.35, 0.35),
        half_width=a,
        upper=0.5 * a * opening,
        lower=0.3 * a * rng.uniform(0.6, 1.2),
        upper_skew=rng.uniform(-0.3, 0.3),
        lower_skew=rng.uniform(-0.3, 0.3),
        bluntness=rng.uniform(0.0, 0.6),
        iris_x=iris_x,
        iris_y=iris_y,
        iris_radius=0.42 * a * rng.uniform(0.85, 1.1),
        squash_x=math.sqrt(1 - (iris_x / a) ** 2),
        squash_y=math.sqrt(1 - (iris_y / a) ** 2),
        pupil_ratio=rng.uniform(0.25, 0.65),
        pupil_dx=rng.uniform(-0.08, 0.08),
        pupil_dy=rng.uniform(-0.08, 0.08),
    )


def sample_look(rng: np.random.Generator, eye: Eye) -> Look:
    """Draw intensities and imaging conditions. Skin overlaps both the iris (dark skin) and the
    sclera (bright skin), so only shape and context separate the classes."""
    iris = rng.uniform(0.12, 0.55)
    return Look(
        skin=rng.uniform(0.25, 0.85),
        sclera=min(iris + rng.uniform(0.2, 0.5), 0.95),
        iris=iris,
        pupil=iris * rng.uniform(0.1, 0.5),
        iris_contrast=rng.uniform(0.05, 0.3),
        gradient=rng.uniform(0.0, 0.5),
        gradient_angle=rng.uniform(0, 2 * math.pi),
        blur=rng.uniform(0.3, 1.3) * eye.half_width / _HALF_WIDTH,
        noise=rng.uniform(0.005, 0.04),
        gamma=rng.uniform(0.8, 1.25),
    )


class Geometry:
    """The implicit shapes of one eye on the pixel grid (float32, pixel centres): approximate
    signed distances in pixels, negative inside, of the opening between the lids (whole image)
    and of the iris and pupil (inside ``iris_box`` only, where they can be)."""

    def __init__(self, eye: Eye, height: int, width: int) -> None:
        self.eye, self.shape = eye, (height, width)
        rows, cols = _grid(height, width)
        self.x, self.y = _to_eye(eye, rows, cols)
        self.upper_lid, self.lower_lid = lid_curves(eye, self.x)
        self.opening = np.maximum.reduce(
            [self.upper_lid - self.y, self.y - self.lower_lid, np.abs(self.x) - eye.half_width]
        )
        r = eye.iris_radius
        centre_row, centre_col = _to_image(eye, eye.iris_x, eye.iris_y)
        self.iris_box = _box(centre_row, centre_col, r, self.shape)
        u = (self.x[self.iris_box] - eye.iris_x) / (eye.squash_x * r)
        v = (self.y[self.iris_box] - eye.iris_y) / (eye.squash_y * r)
        self.iris_r = np.sqrt(u * u + v * v)  # 1 on the limbus
        self.iris_angle = np.arctan2(v, u)
        self.iris = (self.iris_r - 1) * r
        self.pupil = (np.hypot(u - eye.pupil_dx, v - eye.pupil_dy) - eye.pupil_ratio) * r

    def labels(self, n_classes: int) -> np.ndarray:
        """Class of each pixel centre: only what the lids leave visible is sclera, iris or pupil."""
        visible = self.opening < 0
        mask = visible.astype(np.uint8)
        box, seen = mask[self.iris_box], visible[self.iris_box]
        box[seen & (self.iris < 0)] = 2
        box[seen & (self.pupil < 0)] = 3
        return mask if n_classes == 4 else (mask == 1).astype(np.uint8)


def lid_curves(eye: Eye, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upper and lower lid margins (the y of each at ``x``): skewed, blunted parabolas that
    meet at the corners x = ±a."""
    t = np.clip(x / eye.half_width, -1, 1)
    bulge = (1 - t * t) * (1 + eye.bluntness * t * t)
    return -eye.upper * bulge * (1 + eye.upper_skew * t), eye.lower * bulge * (1 + eye.lower_skew * t)


def render(geo: Geometry, look: Look, rng: np.random.Generator) -> np.ndarray:
    """The grey image (float32 in [0, 1]) of an eye: layers back to front, then the camera's
    lighting, blur and noise (its response curve is applied by :func:`generate`)."""
    image = _skin(geo, look, rng)
    inside = np.clip(0.5 - geo.opening / _EDGE, 0, 1)
    image += (_sclera(geo, look) - image) * inside
    box, seen = geo.iris_box, inside[geo.iris_box]
    iris = np.clip(0.5 - geo.iris / (2 * _EDGE), 0, 1) * seen  # the limbus is a soft edge
    image[box] += (_iris(geo, look, rng) - image[box]) * iris
    image[box] += (look.pupil - image[box]) * (np.clip(0.5 - geo.pupil / _EDGE, 0, 1) * seen)
    image *= 1 - _lashes(geo, rng)
    image += _reflections(geo, rng)
    image *= _illumination(geo.shape, look)
    image = gaussian_filter(image, look.blur, truncate=3.0)
    image += look.noise * rng.standard_normal(geo.shape, dtype=np.float32)
    return np.clip(image, 0, 1)


def _skin(geo: Geometry, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Smooth skin texture; a dark lash line along the upper lid, the lid crease above it and a
    fainter line along the lower lid, all fading out at the corners."""
    a = geo.eye.half_width
    along = np.maximum(1 - np.square(geo.x / (1.1 * a)), 0)
    above = geo.upper_lid - geo.y  # > 0 above the upper lid margin
    crease = geo.eye.upper * rng.uniform(0.6, 1.2) + 0.15 * a
    darkening = along * (
        rng.uniform(0.1, 0.35) * _bump((above - crease) / (0.08 * a))
        + rng.uniform(0.2, 0.5) * _bump(above / (0.06 * a))
        + rng.uniform(0.0, 0.25) * _bump((geo.y - geo.lower_lid) / (0.05 * a))
    )
    return look.skin * (1 + 0.12 * _waves(rng, geo.shape, a / 3)) * (1 - darkening)


def _sclera(geo: Geometry, look: Look) -> np.ndarray:
    """Brightest in the middle, darker towards the corners (the eyeball curves away) and in the
    upper lid's shadow."""
    a = geo.eye.half_width
    shadow = _bump(np.maximum(geo.y - geo.upper_lid, 0) / (0.3 * a))
    return look.sclera * (1 - 0.3 * np.square(geo.x / a)) * (1 - 0.35 * shadow)


def _iris(geo: Geometry, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Radial striations that wander with the radius, a darker limbal ring, a paler collarette."""
    r, phi = geo.iris_r, geo.iris_angle
    pattern = np.zeros_like(r)
    for _ in range(3):
        spokes = int(rng.integers(8, 40))
        pattern += np.cos(spokes * phi + rng.uniform(0, 2 * math.pi) + rng.uniform(-4, 4) * r)
    limbus = np.clip((r - 0.75) / 0.25, 0, 1)
    collarette = _bump((r - 0.5) / 0.2)
    return look.iris * (1 + look.iris_contrast / 3 * pattern) * (1 - 0.35 * limbus) * (1 + 0.15 * collarette)


def _lashes(geo: Geometry, rng: np.random.Generator) -> np.ndarray:
    """Darkening (0..0.85) by eyelashes: thin curved strokes rooted on the upper lid margin, most
    curling up and out, some hanging over the eye; drawn by splatting points along each stroke."""
    eye, a = geo.eye, geo.eye.half_width
    count = int(rng.integers(15, 45))
    root_t = rng.uniform(-0.9, 0.9, count)
    root_y = lid_curves(eye, root_t * a)[0]
    sign = np.where(rng.random(count) < 0.3, -1.0, 1.0)  # -1: hanging down over the eye
    direction = -sign * math.pi / 2 + sign * 0.8 * root_t + rng.normal(0, 0.2, count)
    length = a * np.where(sign < 0, rng.uniform(0.08, 0.2, count), rng.uniform(0.15, 0.35, count))
    curl = rng.uniform(-0.3, 0.3, count) * length
    s = np.linspace(0, 1, math.ceil(0.35 * a) + 2)[:, None]  # about a point per pixel
    dx, dy = np.cos(direction), np.sin(direction)
    rows, cols = _to_image(
        eye, root_t * a + s * length * dx - s * s * curl * dy, root_y + s * length * dy + s * s * curl * dx
    )
    rows, cols = np.floor(rows).astype(np.int64).ravel(), np.floor(cols).astype(np.int64).ravel()
    darkness = np.broadcast_to(rng.uniform(0.25, 0.6, count), (*s.shape[:1], count)).ravel()
    height, width = geo.shape
    keep = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    splat = np.bincount(rows[keep] * width + cols[keep], darkness[keep], height * width)
    return np.minimum(splat, 0.85).reshape(geo.shape).astype(np.float32)


def _reflections(geo: Geometry, rng: np.random.Generator) -> np.ndarray:
    """One to three small bright blobs near the pupil: specular reflections of the light source."""
    eye, r = geo.eye, geo.eye.iris_radius
    glow = np.zeros(geo.shape, np.float32)
    rows, cols = _grid(*geo.shape)
    for _ in range(int(rng.integers(1, 4))):
        row, col = _to_image(eye, eye.iris_x + rng.normal(0, 0.4) * r, eye.iris_y + rng.normal(0, 0.4) * r)
        sigma = r * rng.uniform(0.03, 0.09)
        box = _box(row, col, 3 * sigma, geo.shape)
        distance2 = np.square(rows[box] - row) + np.square(cols[box] - col)
        glow[box] += rng.uniform(0.4, 0.9) * np.exp(distance2 / (-2 * sigma * sigma))
    return glow


def _illumination(shape: tuple[int, int], look: Look) -> np.ndarray:
    """A linear brightness ramp across the image (uneven lighting), 1 in the middle."""
    rows, cols = _grid(*shape)
    ramp = math.cos(look.gradient_angle) * cols / shape[1] + math.sin(look.gradient_angle) * rows / shape[0]
    middle = (math.cos(look.gradient_angle) + math.sin(look.gradient_angle)) / 2
    return 1 + look.gradient * (ramp - middle)


def _waves(rng: np.random.Generator, shape: tuple[int, int], wavelength: float, count: int = 4) -> np.ndarray:
    """Smooth texture in [-1, 1]: the mean of ``count`` random plane waves, each built from
    outer products of 1-D cosines and sines (cos(a + b) = cos a cos b - sin a sin b) for speed."""
    rows, cols = np.arange(shape[0], dtype=np.float32), np.arange(shape[1], dtype=np.float32)
    total = np.zeros(shape, np.float32)
    for _ in range(count):
        k_row, k_col = rng.normal(size=2) / wavelength
        a, b = float(k_col) * cols + rng.uniform(0, 2 * math.pi), float(k_row) * rows
        total += np.outer(np.cos(b), np.cos(a)) - np.outer(np.sin(b), np.sin(a))
    return total / count


def _bump(z: np.ndarray) -> np.ndarray:
    """A smooth bump: 1 at z = 0, 0 for |z| ≥ 1 (a cheap stand-in for a Gaussian)."""
    return np.square(np.maximum(1 - z * z, 0))


@lru_cache(maxsize=8)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (row, col), float32; cached, never written to."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32) + np.float32(0.5)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


def _to_eye(eye: Eye, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cos, sin = math.cos(eye.angle), math.sin(eye.angle)
    dx, dy = cols - eye.cx, rows - eye.cy
    return dx * cos + dy * sin, dy * cos - dx * sin


def _to_image(eye: Eye, x: Any, y: Any) -> tuple[Any, Any]:
    """(row, col) of eye-frame points, in the continuous pixel coordinates of :func:`_grid`."""
    cos, sin = math.cos(eye.angle), math.sin(eye.angle)
    return eye.cy + x * sin + y * cos, eye.cx + x * cos - y * sin


def _box(row: float, col: float, radius: float, shape: tuple[int, int]) -> tuple[slice, slice]:
    """The pixels whose centres may lie within ``radius`` of (row, col), clipped to the image."""

    def span(centre: float, size: int) -> slice:
        low = min(max(math.floor(centre - radius - 1), 0), size)
        return slice(low, max(min(math.ceil(centre + radius + 1), size), low))

    return span(row, shape[0]), span(col, shape[1])


def generate(
    seed: int, split: str, index: int, size: tuple[int, int] = (96, 160), n_classes: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``index`` of ``split``: a uint8 grey image and a uint8 class mask, both H×W."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    eye = sample_eye(rng, *size)
    look = sample_look(rng, eye)
    geo = Geometry(eye, *size)
    levels = np.rint(render(geo, look, rng) * 255).astype(np.uint8)
    # The camera's response curve, applied to the 8-bit levels (a table: cheaper than a power).
    response = np.rint(255 * np.linspace(0, 1, 256) ** look.gamma).astype(np.uint8)
    return response[levels], geo.labels(n_classes)


class SyntheticEyes(torch.utils.data.Dataset):
    """One split of generated eyes: ``{"image": 1×H×W float in [-1, 1], "target": H×W int64}``.

    Flips (training split only) come from :func:`flip_rng` with the dataset seed and the item
    index; call ``set_epoch(e)`` to draw new flips each epoch.
    """

    def __init__(
        self, split: str, length: int, size: tuple[int, int], n_classes: int, seed: int, transforms: Transforms
    ) -> None:
        self.split, self.length, self.size = split, length, size
        self.n_classes, self.seed, self.transforms = n_classes, seed, transforms
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"synthetic_eyes {self.split}: index {index} out of range 0..{self.length - 1}")
        image, mask = generate(self.seed, self.split, index, self.size, self.n_classes)
        rng = flip_rng(self.seed, index, self.epoch) if self.split == "train" else None
        return self.transforms(image, mask, rng)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def build(
    size: Any = (96, 160),
    n_train: int = 512,
    n_val: int = 128,
    n_classes: int = 4,
    seed: int = 0,
    transforms: dict | None = None,
) -> DataSplits:
    """The ``synthetic_eyes`` factory: train and val splits of generated eyes."""
    size = parse_size(size, "synthetic_eyes: size", minimum=_MIN_SIZE)
    for name, value in (("n_train", n_train), ("n_val", n_val)):
        if not is_int(value) or value < 1:
            raise ConfigError(f"synthetic_eyes: {name} must be a positive integer, got {value!r}")
    if not is_int(n_classes) or n_classes not in CLASS_NAMES:
        raise ConfigError(
            f"synthetic_eyes: n_classes must be 4 (skin, sclera, iris, pupil) or 2 (rest, sclera), got {n_classes!r}"
        )
    if not is_int(seed) or seed < 0:
        raise ConfigError(f"synthetic_eyes: seed must be a non-negative integer, got {seed!r}")
    pipeline = Transforms.from_config(transforms, "synthetic_eyes: transforms")
    splits = {
        name: SyntheticEyes(name, length, size, n_classes, seed, pipeline)
        for name, length in (("train", n_train), ("val", n_val))
    }
    return DataSplits(
        splits["train"],
        splits["val"],
        n_classes=n_classes,
        in_channels=1,
        class_names=CLASS_NAMES[n_classes],
        task="segmentation",
    )


@dataclass
class EyesArgs:
    size: list[int] | int = field([96, 160], doc="[height, width] of the images (one number: square)")
    n_train: int = field(512, min=1)
    n_val: int = field(128, min=1)
    n_classes: Literal[2, 4] = field(4, doc="4: skin, sclera, iris, pupil; 2: rest, sclera")
    seed: int = field(0, min=0)
    transforms: dict[str, Any] | None = field(None, doc="resize, clahe, hflip, vflip")


@hookimpl
def prunekit_datasets() -> list[Spec]:
    return [
        Spec(
            "synthetic_eyes",
            build,
            "generated grey eye images, 4 classes (skin, sclera, iris, pupil) or 2; args size, "
            "n_train, n_val, n_classes, seed, transforms",
            EyesArgs,
        )
    ]
