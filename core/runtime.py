"""What a run needs around the model: device, seeds, and the data loaders."""
from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import distributed
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

    def loader(self, dataset: Any, seed: int | None) -> DataLoader:
        """Shuffled by ``seed`` (``None``: in order); under torchrun each process gets its share.
        A dataset with ``set_epoch`` gets the seed, so random augmentation differs per epoch."""
        if seed is not None and hasattr(dataset, "set_epoch"):
            dataset.set_epoch(seed)
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist() \
            if seed is not None else list(range(len(dataset)))
        return self._batches(dataset, order[distributed.rank()::distributed.world()])

    def calibration(self, batches: int, seed: int) -> Iterator[dict]:
        """``batches`` training batches in a seeded order. Under torchrun the same samples are
        shared out among the processes, so the summed statistics equal a single process's."""
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed)).tolist()
        chosen = order[:batches * self.batch_size]
        return iter(self._batches(self.train, chosen[distributed.rank()::distributed.world()]))

    def _batches(self, dataset: Any, indices: list[int]) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, sampler=indices, num_workers=self.num_workers)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A batch with its tensors on ``device``."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def build_data(cfg: Config, plugins: Manager) -> RunData:
    splits = plugins.get("dataset", cfg.data.name, **cfg.data.args)
    if not isinstance(splits, DataSplits):
        raise DataError(f"dataset {cfg.data.name!r} returned {type(splits).__name__}, not DataSplits")
    if len(splits.train) == 0:
        raise DataError(f"dataset {cfg.data.name!r} has no training samples")
    return RunData(splits, cfg.data.batch_size, cfg.data.num_workers)
