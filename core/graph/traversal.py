"""A model's traversal: what a traversal plugin says about it, or sensible defaults for a model
no plugin knows — blocks are its top-level children that hold parameters, and the feature maps
they return are the distillation taps. Layers feeding the model's output are protected anyway."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..records import Traversal
from ..seam import LayerTypes
from .recording import record


def traversal_of(model: nn.Module, plugins: LayerTypes, example_input: Any = None) -> Traversal:
    """The first traversal plugin's answer, or the default one (taps only with ``example_input``)."""
    known = plugins.traversal(model)
    if known is not None:
        return known
    blocks = {name: child for name, child in model.named_children() if any(True for _ in child.parameters())}
    taps: tuple[str, ...] = ()
    if example_input is not None and blocks:
        calls = record(model, example_input, blocks).calls
        taps = tuple(dict.fromkeys(c.name for c in calls if len(c.output) >= 3))  # feature maps, in forward order
    return Traversal("default", blocks=tuple(blocks), taps=taps)
