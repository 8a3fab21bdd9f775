"""The batches a run trains, validates and calibrates on, in a reproducible order."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader

from .. import distributed
from ..errors import DataError
from ..records import DataSplits, as_batch
from .seeds import step_seed


class TrainingData(Protocol):
    """What training, validation and calibration need from a run's data."""

    @property
    def n_classes(self) -> int: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def has_train(self) -> bool:
        """Whether there is training data (a loop of your own may bring none)."""
        ...

    def example(self) -> torch.Tensor:
        """One input as the model takes it: a batch of one."""
        ...

    def train_batches(self, seed: int | None) -> Iterable[dict[str, Any]]: ...

    def epochs(self, seed: int) -> Iterable[dict[str, Any]]:
        """The training batches, shuffled anew (by ``seed`` and the epoch) every time it is iterated."""
        ...

    def val_batches(self) -> Iterable[dict[str, Any]] | None: ...

    def calibration_batches(self, batches: int, seed: int) -> Iterable[dict[str, Any]]: ...


@dataclass
class Batches:
    """A loader's batches as dicts with ``image`` and ``target``, sized where the loader is (so a
    progress bar has its total)."""

    loader: Iterable[Any]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (as_batch(value) for value in self.loader)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]  # a TypeError for an unsized loader, as len() gives


@dataclass
class Epochs:
    """Training batches that a loop iterates once per epoch, each time in a new seeded order."""

    data: TrainingData
    seed: int
    epoch: int = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.epoch += 1
        return iter(self.data.train_batches(step_seed(self.seed, self.epoch)))


@dataclass
class SplitData:
    """Batches from a dataset plugin's :class:`~prunekit.DataSplits`.

    Under torchrun each process takes its share of every ordering, so processes see disjoint
    samples and their summed statistics equal a single process's.
    """

    splits: DataSplits
    batch_size: int
    num_workers: int = 0

    def __post_init__(self) -> None:
        if len(self.splits.train) == 0:
            raise DataError("the dataset has no training samples")

    has_train = True

    def epochs(self, seed: int) -> Epochs:
        return Epochs(self, seed)

    @property
    def n_classes(self) -> int:
        return self.splits.n_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.splits.class_names)

    def train_batches(self, seed: int | None) -> Iterable[dict[str, Any]]:
        """Shuffled by ``seed`` (``None``: in order). A dataset with ``set_epoch`` gets the seed, so
        random augmentation differs per epoch."""
        dataset = self.splits.train
        if seed is not None and hasattr(dataset, "set_epoch"):
            dataset.set_epoch(seed)
        return self._loader(dataset, _order(len(dataset), seed))

    def val_batches(self) -> Iterable[dict[str, Any]] | None:
        val = self.splits.val
        return None if val is None else self._loader(val, range(len(val)))

    def calibration_batches(self, batches: int, seed: int) -> Iterable[dict[str, Any]]:
        """``batches`` training batches in a seeded order."""
        return self._loader(self.splits.train, _order(len(self.splits.train), seed)[: batches * self.batch_size])

    def example(self) -> torch.Tensor:
        """One input as the model takes it (a batch of one), from the validation set if there is one."""
        dataset = self.splits.val if self.splits.val is not None and len(self.splits.val) else self.splits.train
        return as_batch(_collate_one(dataset[0]))["image"].clone()

    def _loader(self, dataset: Any, indices: Sequence[int]) -> Iterable[dict[str, Any]]:
        shard = indices[distributed.rank() :: distributed.world()]
        return Batches(DataLoader(dataset, batch_size=self.batch_size, sampler=shard, num_workers=self.num_workers))


def _order(n: int, seed: int | None) -> Sequence[int]:
    if seed is None:
        return range(n)  # lazy: a first batch of a huge dataset costs one batch
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def _collate_one(item: Any) -> Any:
    return torch.utils.data.default_collate([item])


@dataclass
class LoaderData:
    """Batches from the user's own iterables (DataLoaders): used as given — their order, their
    sharding under torchrun (give them a ``DistributedSampler`` there) — with every batch turned
    into a dict with ``image`` and ``target``."""

    train: Iterable[Any] | None
    val: Iterable[Any] | None
    n_classes: int
    class_names: tuple[str, ...] = ()

    @property
    def has_train(self) -> bool:
        return self.train is not None

    @property
    def batch_size(self) -> int:
        source = self.train if self.train is not None else self.val  # (an unsized loader has no truth value)
        return int(getattr(source, "batch_size", None) or 1)

    def train_batches(self, seed: int | None) -> Iterable[dict[str, Any]]:
        if self.train is None:
            raise DataError("no training data was given (train=); prunekit's own training needs it")
        set_epoch = getattr(getattr(self.train, "sampler", None), "set_epoch", None)
        if seed is not None and set_epoch is not None:
            set_epoch(seed)  # a DistributedSampler: a new order per epoch
        return Batches(self.train)

    def epochs(self, seed: int) -> Epochs:
        return Epochs(self, seed)

    def val_batches(self) -> Iterable[dict[str, Any]] | None:
        return None if self.val is None else Batches(self.val)

    def calibration_batches(self, batches: int, seed: int) -> Iterable[dict[str, Any]]:
        return itertools.islice(self.train_batches(seed), batches)

    def example(self) -> torch.Tensor:
        source = self.train if self.train is not None else self.val
        batch = next(iter(Batches(source if source is not None else [])), None)
        if batch is None:
            raise DataError("the data yields no batch to take an example input from; give example_input=")
        return batch["image"][:1].clone()
