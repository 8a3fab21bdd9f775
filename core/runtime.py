"""What a run needs around the model: device, seeds, and the data loaders."""
from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .config import Config
from .errors import ConfigError, DataError
from .plugin_manager import Manager
from .types import DataSplits


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: {name!r} is not a device; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} was asked for but CUDA is not available; use auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, step: int) -> int:
    """A seed for everything random in one step, so a resumed run repeats it exactly."""
    return zlib.crc32(f"{seed}:{step}".encode())


@dataclass
class RunData:
    splits: DataSplits
    batch_size: int
    num_workers: int

    @property
    def train(self):
        return self.splits.train

    @property
    def val(self):
        return self.splits.val

    @property
    def n_classes(self) -> int:
        return self.splits.n_classes

    def loader(self, dataset: Any, seed: int | None, sampler: Any = None) -> DataLoader:
        """Shuffled by ``seed`` (``None``: in order)."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=seed is not None and sampler is None,
                          generator=generator, sampler=sampler, num_workers=self.num_workers,
                          drop_last=False)

    def calibration(self, batches: int, seed: int) -> Iterator[dict]:
        """The calibration pass: ``batches`` training batches in a seeded order, no augmentation."""
        return islice(iter(self.loader(self.train, seed)), batches)


def build_data(cfg: Config, plugins: Manager) -> RunData:
    splits = plugins.get("dataset", cfg.data.name, **cfg.data.args)
    if not isinstance(splits, DataSplits):
        raise DataError(f"dataset {cfg.data.name!r} returned {type(splits).__name__}, not DataSplits")
    if len(splits.train) == 0:
        raise DataError(f"dataset {cfg.data.name!r} has no training samples")
    return RunData(splits, cfg.data.batch_size, cfg.data.num_workers)
