"""Seeds: one for the whole run, and one derived per step, so a resumed run repeats a step exactly."""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, step: int) -> int:
    """A seed for everything random in one step, so a resumed run repeats it exactly."""
    return zlib.crc32(f"{seed}:{step}".encode())
