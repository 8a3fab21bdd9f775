"""Reading image files: decoded at once, so a broken file fails where it is read, naming itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from prunekit.plugin import DataError


def open_image(path: Path, what: str) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here and names itself
            return image
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"image_folder: cannot read {what} '{path}' ({exc})") from None


def load_image(path: Path, channels: int) -> np.ndarray:
    """A uint8 image, H×W (``channels=1``, grey) or H×W×3 (``channels=3``, RGB)."""
    return np.asarray(open_image(path, "image").convert("L" if channels == 1 else "RGB"))
