"""The small records plugins hand to prunekit: named factories, traversals, data splits, outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import DataError
from .layer_type import LayerType


@dataclass(frozen=True)
class Spec:
    """A named factory: what model, dataset, criterion, loss, logger, task and preset hooks return.

    ``factory(**params)`` builds the object; ``description`` is shown by ``prunekit plugins``.
    ``args``, a dataclass, declares the factory's arguments: configs are then checked against it
    key by key (names with "did you mean", types, ranges, finite numbers) before anything runs.
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""
    args: type | None = None


@dataclass
class NoArgs:
    """``Spec.args`` of a factory that takes no arguments: a config that gives some is refused."""


@dataclass(frozen=True)
class Traversal:
    """What a traversal plugin knows about a model it recognises.

    ``blocks`` are module paths; a layer belongs to the longest block path that prefixes its
    name (layers outside every block form their own block). ``protected`` layers keep all their
    output channels. ``taps`` are the default module paths tapped for feature distillation.
    """

    name: str
    blocks: tuple[str, ...] = ()
    protected: tuple[str, ...] = ()
    taps: tuple[str, ...] = ()

    def matching(self, model: nn.Module) -> Traversal | None:
        """This traversal if ``model`` has every module it names (blocks, protected, taps), else None."""
        names = {name for name, _ in model.named_modules()}
        return self if names.issuperset((*self.blocks, *self.protected, *self.taps)) else None


@dataclass
class ScoredLayer:
    """What a criterion's ``score`` receives: one layer owning prunable output channels."""

    name: str
    module: nn.Module
    role: str  # out, dw or norm
    layer_type: LayerType

    def weight_rows(self) -> torch.Tensor | None:
        """The weights producing each output channel, one row per channel (``None`` if it has none)."""
        return self.layer_type.weight_rows(self.module)


@dataclass
class DataSplits:
    """What a dataset plugin builds: map-style training and validation sets.

    Items are dicts with ``image`` and ``target`` (``mask`` or ``label`` are accepted as the
    target's name) or tuples ``(image, target)``. ``task`` names the task plugin that scores
    them (``None``: the config must say).
    """

    train: Any
    val: Any
    n_classes: int
    in_channels: int
    class_names: tuple[str, ...] = ()
    task: str | None = None


@dataclass
class Outputs:
    """A network's output for a distillation loss: ``logits`` (N×K, or N×K×H×W for dense
    prediction) and the tapped ``features`` (module path -> that module's output)."""

    logits: torch.Tensor
    features: dict[str, torch.Tensor]


def to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """A batch with its tensors on ``device``."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


#: other names a dataset may give the target
TARGET_ALIASES = ("mask", "label")


def as_batch(value: Any) -> dict[str, Any]:
    """A collated batch as prunekit passes it to losses and metrics: a dict with ``image`` and
    ``target`` (plus whatever else the dataset provides). Tuples ``(image, target, ...)`` and
    dicts that call the target ``mask`` or ``label`` are accepted."""
    if isinstance(value, dict):
        if "image" not in value:
            raise DataError(f"a batch dict needs an 'image' entry; it has {sorted(map(str, value))}")
        alias = next((a for a in TARGET_ALIASES if a in value), None)
        return value if "target" in value or alias is None else {**value, "target": value[alias]}
    if isinstance(value, (tuple, list)) and len(value) >= 2 and torch.is_tensor(value[0]):
        return {"image": value[0], "target": value[1]}
    raise DataError(
        f"a batch must be a dict with 'image' and 'target' or a tuple (image, target); got {type(value).__name__}"
    )
