"""Built-in layer types: convolutions, transposed convolutions, linear, norms, activations,
pooling, upsampling. One small class per family; each counts MACs/params from a shape record
and cuts channels physically."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from prunekit.plugin import Flow, LayerShape, LayerType, PruneError, cut_parameter, hookimpl, numel


def _kernel(module: Any) -> int:
    return math.prod(module.kernel_size)


def _bias(module: Any, channels: int) -> int:
    return channels if getattr(module, "bias", None) is not None else 0


def regroup(weight: torch.Tensor, keep: torch.Tensor, dim: int, groups: int) -> torch.Tensor:
    """Keep channels ``keep`` (global indices) along ``dim`` of a grouped weight, whose dim 0 holds
    the groups one after another and whose ``dim`` holds each group's channels: group g keeps
    its own ``keep`` channels, as many as every other group (else :class:`PruneError`)."""
    rows, per = weight.shape[0] // groups, weight.shape[dim]
    local = [[int(i) - g * per for i in keep.tolist() if g * per <= i < (g + 1) * per] for g in range(groups)]
    if len({len(kept) for kept in local}) != 1:
        raise PruneError(
            f"a grouped layer must keep as many channels in each of its {groups} groups, "
            f"not {[len(kept) for kept in local]}"
        )
    parts = [
        weight[g * rows : (g + 1) * rows].index_select(dim, torch.tensor(local[g], device=weight.device))
        for g in range(groups)
    ]
    return torch.cat(parts).contiguous()


def set_weight(m: Any, data: torch.Tensor) -> None:
    m.weight = nn.Parameter(data, requires_grad=m.weight.requires_grad)


class Conv(LayerType):
    """Conv1d/2d/3d. MACs = output elements × input channels per group × kernel size.

    A depthwise convolution (groups == in_channels) passes each input channel to its ``out/in``
    output channels, which are pruned with it. A grouped one (neither plain nor depthwise) is G
    convolutions side by side: it loses the same number of input channels, and of output
    channels, in every group (Xie et al. 2017's ResNeXt, Radosavovic et al. 2020's RegNet).
    """

    kind = "conv"

    @staticmethod
    def depthwise(m: Any) -> bool:
        return m.groups > 1 and m.groups == m.in_channels

    def flow(self, m: Any) -> Flow:
        if m.groups == 1:
            return Flow.PRODUCER
        return Flow.DEPTHWISE if self.depthwise(m) else Flow.GROUPED

    def groups(self, m: Any) -> int:
        return int(m.groups)

    def _weights_per_output(self, m: Any, shape: LayerShape) -> int:
        # in / groups, exact whenever every group lost as many inputs as the others
        return _kernel(m) if self.depthwise(m) else shape.in_channels * _kernel(m) // m.groups

    def macs(self, m: Any, shape: LayerShape) -> int:
        return numel(shape.output) * self._weights_per_output(m, shape)

    def params(self, m: Any, shape: LayerShape) -> int:
        return shape.out_channels * self._weights_per_output(m, shape) + _bias(m, shape.out_channels)

    def weight_rows(self, m: Any) -> torch.Tensor:
        return m.weight.detach().flatten(1)

    def prune_out(self, m: Any, keep: torch.Tensor) -> None:
        multiplier = m.out_channels // m.in_channels if self.depthwise(m) else None
        cut_parameter(m, "weight", keep, 0)
        cut_parameter(m, "bias", keep, 0)
        m.out_channels = len(keep)
        if multiplier is not None:
            m.in_channels = m.groups = len(keep) // multiplier

    def prune_in(self, m: Any, keep: torch.Tensor) -> None:
        if m.groups > 1:
            set_weight(m, regroup(m.weight.detach(), keep, 1, m.groups))
        else:
            cut_parameter(m, "weight", keep, 1)
        m.in_channels = len(keep)


class ConvTranspose(Conv):
    """ConvTranspose1d/2d/3d: the weight is in × out/groups, and MACs use the *input* size.

    MACs = input elements × output channels per group × kernel size.
    """

    @staticmethod
    def depthwise(m: Any) -> bool:
        return m.groups > 1 and m.groups == m.in_channels == m.out_channels

    def _weights_per_input(self, m: Any, shape: LayerShape) -> int:
        return _kernel(m) if self.depthwise(m) else shape.out_channels * _kernel(m) // m.groups

    def macs(self, m: Any, shape: LayerShape) -> int:
        return numel(shape.input) * self._weights_per_input(m, shape)

    def params(self, m: Any, shape: LayerShape) -> int:
        return shape.in_channels * self._weights_per_input(m, shape) + _bias(m, shape.out_channels)

    def weight_rows(self, m: Any) -> torch.Tensor:
        weight = m.weight.detach()
        if self.depthwise(m):
            return weight.flatten(1)
        per_in, per_out = weight.shape[0] // m.groups, weight.shape[1]
        rows = [weight[g * per_in : (g + 1) * per_in, j] for g in range(m.groups) for j in range(per_out)]
        return torch.stack([r.flatten() for r in rows])  # output channel g·(out/G) + j reads group g's inputs

    def prune_out(self, m: Any, keep: torch.Tensor) -> None:
        if self.depthwise(m):
            cut_parameter(m, "weight", keep, 0)
            m.in_channels = m.groups = len(keep)
        elif m.groups > 1:
            set_weight(m, regroup(m.weight.detach(), keep, 1, m.groups))
        else:
            cut_parameter(m, "weight", keep, 1)
        cut_parameter(m, "bias", keep, 0)
        m.out_channels = len(keep)

    def prune_in(self, m: Any, keep: torch.Tensor) -> None:
        cut_parameter(m, "weight", keep, 0)
        m.in_channels = len(keep)


class Linear(LayerType):
    """Linear: MACs = output elements × in_features; channels live on the last dim."""

    name, module, kind = "linear", nn.Linear, "linear"
    in_dim = out_dim = -1

    def flow(self, m: Any) -> Flow:
        return Flow.PRODUCER

    def macs(self, m: Any, shape: LayerShape) -> int:
        return numel(shape.output) * shape.in_channels

    def params(self, m: Any, shape: LayerShape) -> int:
        return shape.out_channels * shape.in_channels + _bias(m, shape.out_channels)

    def weight_rows(self, m: Any) -> torch.Tensor:
        return m.weight.detach()

    def prune_out(self, m: Any, keep: torch.Tensor) -> None:
        cut_parameter(m, "weight", keep, 0)
        cut_parameter(m, "bias", keep, 0)
        m.out_features = len(keep)

    def prune_in(self, m: Any, keep: torch.Tensor) -> None:
        cut_parameter(m, "weight", keep, 1)
        m.in_features = len(keep)


class Norm(LayerType):
    """BatchNorm / InstanceNorm: one multiply-add per element; γ and β per channel."""

    kind = "norm"

    def flow(self, m: Any) -> Flow:
        return Flow.CHANNELWISE

    def macs(self, m: Any, shape: LayerShape) -> int:
        return numel(shape.output)

    def params(self, m: Any, shape: LayerShape) -> int:
        return 2 * shape.out_channels if m.affine else 0

    def weight_rows(self, m: Any) -> torch.Tensor | None:
        return m.weight.detach()[:, None] if m.affine else None

    def prune_out(self, m: Any, keep: torch.Tensor) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            cut_parameter(m, name, keep, 0)
        m.num_features = len(keep)


class GroupNorm(Norm):
    """GroupNorm: channel-wise within each of its G groups, so removing whole groups (blocks of
    C/G channels) leaves the others' statistics as they were — exact; G shrinks with the cut."""

    def __init__(self) -> None:
        super().__init__(nn.GroupNorm)

    def block(self, m: Any) -> int:
        return int(m.num_channels // m.num_groups)

    def prune_out(self, m: Any, keep: torch.Tensor) -> None:
        size = self.block(m)
        kept = sorted(int(i) for i in keep)
        whole = {i // size for i in kept}
        if len(kept) != len(whole) * size:
            raise PruneError(f"GroupNorm keeps whole groups of {size} channels, not {len(kept)} channels")
        cut_parameter(m, "weight", keep, 0)
        cut_parameter(m, "bias", keep, 0)
        m.num_channels, m.num_groups = len(kept), len(whole)


class LayerNorm(LayerType):
    """LayerNorm over the channels: no cut is exact — removing channels changes every remaining
    channel's mean and variance. Counted; cut (its γ and β with the channels) only where a config
    allows the approximation ``layer_norm``.

    ``dim`` holds the channels: -1 for ``nn.LayerNorm`` in channels-last blocks; a
    channels-first ``LayerNorm2d`` (a subclass that permutes internally) is registered with 1.
    """

    kind = "norm"
    approximation = "layer_norm"

    def __init__(self, module: type[nn.Module] | str = nn.LayerNorm, dim: int = -1) -> None:
        super().__init__(module)
        self.in_dim = self.out_dim = dim

    def flow(self, m: Any) -> Flow:
        return Flow.OPAQUE

    def macs(self, m: Any, shape: LayerShape) -> int:
        return numel(shape.output)

    def params(self, m: Any, shape: LayerShape) -> int:
        own = sum(p.numel() for p in m.parameters(recurse=False))
        if len(m.normalized_shape) != 1:
            return own
        return own // m.normalized_shape[0] * shape.out_channels  # γ and β: one value per channel each

    def weight_rows(self, m: Any) -> torch.Tensor | None:
        return m.weight.detach()[:, None] if m.weight is not None and len(m.normalized_shape) == 1 else None

    def prune_out(self, m: Any, keep: torch.Tensor) -> None:
        if len(m.normalized_shape) != 1:
            raise PruneError(f"LayerNorm over {tuple(m.normalized_shape)} is cut only when it normalises one dim")
        cut_parameter(m, "weight", keep, 0)
        cut_parameter(m, "bias", keep, 0)
        m.normalized_shape = (len(keep),)


class Elementwise(LayerType):
    """Activations (one op per element) and identities such as dropout (none)."""

    elementwise = True

    def flow(self, m: Any) -> Flow:
        return Flow.CHANNELWISE

    def __init__(self, module: type[nn.Module], kind: str = "activation") -> None:
        super().__init__(module)
        self.kind = kind

    def macs(self, m: Any, shape: LayerShape) -> int:
        return numel(shape.output) if self.kind == "activation" else 0


class PReLU(Elementwise):
    """PReLU: an activation with one slope per channel (or one shared slope)."""

    elementwise = False

    def __init__(self) -> None:
        super().__init__(nn.PReLU)

    def params(self, m: Any, shape: LayerShape) -> int:
        return shape.out_channels if m.num_parameters > 1 else 1

    def prune_out(self, m: Any, keep: torch.Tensor) -> None:
        if m.num_parameters > 1:
            cut_parameter(m, "weight", keep, 0)
            m.num_parameters = len(keep)


class Pool(LayerType):
    """Pooling: output elements × window size (adaptive: every input element once)."""

    kind = "pooling"

    def flow(self, m: Any) -> Flow:
        return Flow.CHANNELWISE

    def macs(self, m: Any, shape: LayerShape) -> int:
        if not hasattr(m, "kernel_size"):
            return numel(shape.input)
        spatial = len(shape.output) - 2
        kernel = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * spatial
        return numel(shape.output) * math.prod(kernel)


#: multiply-adds per output element of each interpolation mode
INTERPOLATION_MACS = {"nearest": 0, "nearest-exact": 0, "linear": 2, "bilinear": 4, "bicubic": 16, "trilinear": 8}


class Upsample(LayerType):
    """Upsampling: output elements × points interpolated (nearest: a copy, 0)."""

    name, module, kind = "upsample", nn.Upsample, "upsample"

    def flow(self, m: Any) -> Flow:
        return Flow.CHANNELWISE

    def macs(self, m: Any, shape: LayerShape) -> int:
        return numel(shape.output) * INTERPOLATION_MACS.get(m.mode, 0)


ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Threshold,
    nn.LogSigmoid,
)
IDENTITIES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)


@hookimpl
def prunekit_layer_types() -> list[LayerType]:
    types: list[LayerType] = [Conv(c) for c in (nn.Conv1d, nn.Conv2d, nn.Conv3d)]
    types += [ConvTranspose(c) for c in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)]
    types += [Linear(), Upsample(), PReLU()]
    types += [Norm(c) for c in NORMS]
    types += [GroupNorm(), LayerNorm(), *zoo_layer_norms()]
    types += [Elementwise(c) for c in ACTIVATIONS]
    types += [Elementwise(c, "other") for c in IDENTITIES]
    types += [Pool(c) for c in POOLS]
    return types


def zoo_layer_norms() -> list[LayerType]:
    """The zoos' channels-first ``LayerNorm2d``: LayerNorm over dim 1, cut only where
    ``layer_norm`` is allowed; by import path, so no zoo is imported for it."""
    found: list[LayerType] = []
    for zoo, path in (
        ("torchvision", "torchvision.models.convnext.LayerNorm2d"),
        ("timm", "timm.layers.norm.LayerNorm2d"),
    ):
        norm = LayerNorm(path, dim=1)
        norm.name = f"{zoo}.layernorm2d"
        found.append(norm)
    return found
