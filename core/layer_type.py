"""The layer-type base class: how prunekit counts and cuts one module class, and its records."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import torch
from torch import nn

from .errors import PruneError

#: Cost categories of layer types. ``conv`` and ``linear`` are always counted;
#: the others only when ``include`` names them (the table in docs/cost.md).
COST_KINDS = ("conv", "linear", "norm", "activation", "pooling", "upsample", "other")
OPTIONAL_COST_KINDS = ("norm", "activation", "pooling", "upsample")


class Flow(enum.Enum):
    """How a layer's output channels relate to its input channels."""

    PRODUCER = "producer"  # reads every input channel, writes `out_channels` new ones (conv, linear)
    CHANNELWISE = "channelwise"  # output channel c depends on input channel c only (BN, ReLU, pooling)
    DEPTHWISE = "depthwise"  # output channel j depends on input channel j // multiplier only
    GROUPED = "grouped"  # G producers side by side: outputs of group g read the inputs of group g only
    OPAQUE = "opaque"  # mixes channels in a way pruning cannot follow exactly (LayerNorm over channels)


@dataclass(frozen=True)
class LayerShape:
    """Sizes seen by one call of a layer — first input, first output, their channel counts — and
    the layer's groups and kernel size at those counts (1 and ``()`` where it has none). Cost
    functions are called with real and with hypothetical shapes (fewer channels)."""

    input: tuple[int, ...]
    output: tuple[int, ...]
    in_channels: int
    out_channels: int
    groups: int = 1
    kernel: tuple[int, ...] = ()

    @property
    def batch(self) -> int:
        return self.input[0] if self.input else 1

    @classmethod
    def of(
        cls, module: nn.Module, input: tuple[int, ...], output: tuple[int, ...], in_channels: int, out_channels: int
    ) -> LayerShape:
        """The shape of ``module`` at these sizes: a depthwise layer's groups follow its channels."""
        groups = getattr(module, "groups", 1)
        groups = groups if isinstance(groups, int) else 1
        if groups > 1 and groups == getattr(module, "in_channels", None):  # depthwise: a group per channel
            groups = in_channels
        kernel = getattr(module, "kernel_size", ())
        kernel = tuple(kernel) if isinstance(kernel, (tuple, list)) else (kernel,) if isinstance(kernel, int) else ()
        return cls(input, output, in_channels, out_channels, groups, kernel)


class LayerType:
    """How prunekit counts and cuts one module class. Subclass it once per layer type.

    ``in_dim`` / ``out_dim`` are the activation dims that hold the channels (1 for NCHW layers,
    -1 for Linear). ``macs`` and ``params`` are pure functions of the module's static attributes
    and a :class:`LayerShape`, so the cost of any channel count can be predicted without running
    the model. ``prune_out`` / ``prune_in`` keep the given channel indices, physically.
    """

    # set on the class, or per instance when one class serves several module classes. ``module``
    # may also be the class's import path ("pkg.mod.Class"): it is matched by name, so its package
    # is imported only by the models that use it
    name: str
    module: type[nn.Module] | str
    kind: str = "other"
    in_dim: int = 1
    out_dim: int = 1
    #: True when each output element depends on the same input element only (activations):
    #: such a layer passes channels along whichever dim holds them.
    elementwise: bool = False
    #: For an ``OPAQUE`` layer that can be cut approximately (its affine parameters with the
    #: channels): the name a config's ``pruning.approximate`` uses to allow it, e.g. ``layer_norm``.
    approximation: str | None = None

    def __init__(self, module: type[nn.Module] | str | None = None) -> None:
        """One object per module class: ``module`` (a class or its import path) sets the class
        and the name (its lowercased class name) for layer types that serve several classes;
        others set both on the class."""
        if module is not None:
            short = module.rpartition(".")[2] if isinstance(module, str) else module.__name__
            self.module, self.name = module, short.lower()

    def flow(self, module: nn.Module) -> Flow:
        """How channels pass through ``module``: every layer type must say (no default), since a
        wrong answer couples channels that do not belong together."""
        raise NotImplementedError(f"layer type {getattr(self, 'name', type(self).__name__)!r} does not declare flow()")

    def declares_flow(self) -> bool:
        return type(self).flow is not LayerType.flow

    def groups(self, module: nn.Module) -> int:
        """``GROUPED`` layers: into how many groups the channels fall (G). Only equal numbers of
        input channels per group, and of output channels per group, can be removed."""
        return 1

    def block(self, module: nn.Module) -> int:
        """``CHANNELWISE`` layers whose channels go in blocks that are removed whole (GroupNorm:
        the channels of one normalisation group): the block size; 1 for channel by channel."""
        return 1

    def macs(self, module: nn.Module, shape: LayerShape) -> int:
        return 0

    def params(self, module: nn.Module, shape: LayerShape) -> int:
        """Parameters as a function of the channel counts; channel-independent by default."""
        return sum(p.numel() for p in module.parameters(recurse=False))

    def weight_rows(self, module: nn.Module) -> torch.Tensor | None:
        """The weights of each output channel, one row per channel (for weight criteria)."""
        return None

    def prune_out(self, module: nn.Module, keep: torch.Tensor) -> None:
        raise PruneError(f"layer type {self.name!r} cannot remove output channels")

    def prune_in(self, module: nn.Module, keep: torch.Tensor) -> None:
        raise PruneError(f"layer type {self.name!r} cannot remove input channels")

    def can_cut(self, role: str) -> bool:
        """Whether this layer type implements ``prune_in`` (role ``in``) or ``prune_out``."""
        method = "prune_in" if role == "in" else "prune_out"
        return getattr(type(self), method) is not getattr(LayerType, method)


def numel(size: tuple[int, ...]) -> int:
    """The number of elements of a tensor of ``size`` (a shape record's ``input`` or ``output``)."""
    return math.prod(size)


def cut_parameter(module: nn.Module, name: str, keep: torch.Tensor, dim: int) -> None:
    """Replace parameter or buffer ``name`` by its slice ``keep`` along ``dim`` (if it exists)."""
    tensor = getattr(module, name, None)
    if tensor is None:
        return
    data = tensor.detach().index_select(dim, keep.to(tensor.device)).clone()
    if isinstance(tensor, nn.Parameter):
        setattr(module, name, nn.Parameter(data, requires_grad=tensor.requires_grad))
    else:
        setattr(module, name, data)
