"""Which handler moves the channels of which torch function, and probing the functions we do not list.

Functions not in the table are probed once: if every ATen op they run is element-wise
(``torch.Tag.pointwise``), they broadcast like ``add``; otherwise they are unknown and pin the
channels they touch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .channel_ops import Handler, along_dim, cat, ignore, pad, pointwise, reduction, spatial, split, stack, unknown
from .shape_ops import expand, flip, getitem, identity, index_along, permute, repeat, reshape

T = torch.Tensor

# -- the table --------------------------------------------------------------------------------------
ACTIVATIONS = [
    F.relu,
    F.relu_,
    F.relu6,
    F.leaky_relu,
    F.leaky_relu_,
    F.elu,
    F.elu_,
    F.selu,
    F.celu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardswish,
    F.hardsigmoid,
    F.hardtanh,
    F.hardtanh_,
    F.softplus,
    F.softsign,
    F.tanhshrink,
    F.logsigmoid,
    F.threshold,
    torch.relu,
    torch.relu_,
    torch.sigmoid,
    torch.tanh,
    T.relu,
    T.relu_,
    T.sigmoid,
    T.sigmoid_,
    T.tanh,
    T.tanh_,
]
IDENTITIES = [
    T.contiguous,
    T.clone,
    torch.clone,
    T.detach,
    torch.detach,
    T.to,
    T.float,
    T.double,
    T.half,
    T.bfloat16,
    T.type,
    T.type_as,
    T.cpu,
    T.cuda,
    T.requires_grad_,
    T.detach_,
    F.dropout,
    F.dropout1d,
    F.dropout2d,
    F.dropout3d,
    F.alpha_dropout,
    F.feature_alpha_dropout,
]
RESHAPES = [
    T.view,
    T.reshape,
    torch.reshape,
    T.view_as,
    T.reshape_as,
    T.flatten,
    torch.flatten,
    T.unflatten,
    torch.unflatten,
    T.squeeze,
    torch.squeeze,
    T.unsqueeze,
    torch.unsqueeze,
    torch.ravel,
    T.ravel,
]
PERMUTES = [
    T.permute,
    torch.permute,
    T.transpose,
    torch.transpose,
    T.swapaxes,
    torch.swapaxes,
    T.swapdims,
    torch.swapdims,
    T.t,
    torch.t,
    T.movedim,
    torch.movedim,
    T.moveaxis,
    torch.moveaxis,
]
IGNORED = [
    torch.zeros_like,
    torch.ones_like,
    torch.empty_like,
    torch.full_like,
    torch.rand_like,
    torch.randn_like,
    torch.randint_like,
    T.new_zeros,
    T.new_ones,
    T.new_empty,
    T.new_full,
    T.new_tensor,
]

TABLE: dict[Any, Handler] = {
    **dict.fromkeys(ACTIVATIONS, pointwise),
    **dict.fromkeys(IDENTITIES, identity),
    **dict.fromkeys(RESHAPES, reshape),
    **dict.fromkeys(PERMUTES, permute),
    **dict.fromkeys(IGNORED, ignore),
    torch.cat: cat,
    torch.concat: cat,
    torch.concatenate: cat,
    torch.stack: stack,
    torch.chunk: split,
    T.chunk: split,
    torch.split: split,
    T.split: split,
    torch.tensor_split: split,
    T.tensor_split: split,
    torch.unbind: split,
    T.unbind: split,
    T.__getitem__: getitem,
    T.expand: expand,
    T.expand_as: expand,
    torch.broadcast_to: expand,
    T.broadcast_to: expand,
    T.repeat: repeat,
    torch.flip: flip,
    T.flip: flip,
    torch.index_select: index_along(1),
    T.index_select: index_along(1),
    torch.narrow: index_along(1),
    T.narrow: index_along(1),
    torch.select: index_along(1),
    T.select: index_along(1),
    F.pad: pad,
    F.interpolate: spatial(None),
    F.upsample: spatial(None),
    F.grid_sample: spatial(None),
    F.max_pool1d: spatial(1),
    F.max_pool2d: spatial(2),
    F.max_pool3d: spatial(3),
    F.avg_pool1d: spatial(1),
    F.avg_pool2d: spatial(2),
    F.avg_pool3d: spatial(3),
    F.adaptive_avg_pool1d: spatial(1),
    F.adaptive_avg_pool2d: spatial(2),
    F.adaptive_avg_pool3d: spatial(3),
    F.adaptive_max_pool1d: spatial(1),
    F.adaptive_max_pool2d: spatial(2),
    F.adaptive_max_pool3d: spatial(3),
    F.lp_pool1d: spatial(1),
    F.lp_pool2d: spatial(2),
    F.softmax: along_dim(1, None),
    F.log_softmax: along_dim(1, None),
    torch.softmax: along_dim(1, None),
    T.softmax: along_dim(1, None),
    T.log_softmax: along_dim(1, None),
    torch.log_softmax: along_dim(1, None),
    F.normalize: along_dim(2, 1),
    torch.cumsum: along_dim(1, None),
    T.cumsum: along_dim(1, None),
    F.batch_norm: unknown,
    F.layer_norm: unknown,
    F.group_norm: unknown,  # per-channel weights we cannot cut
}
for _name, _additive in [
    ("sum", True),
    ("nansum", True),
    ("mean", False),
    ("nanmean", False),
    ("amax", False),
    ("amin", False),
    ("max", False),
    ("min", False),
    ("std", False),
    ("var", False),
    ("prod", False),
    ("logsumexp", False),
    ("all", False),
    ("any", False),
    ("argmax", False),
    ("argmin", False),
    ("median", False),
]:
    for _owner in (torch, T):
        TABLE[getattr(_owner, _name)] = reduction(1, _additive)
TABLE[torch.norm] = TABLE[T.norm] = reduction(2, False)


def handler_for(func: Any) -> Handler | Callable:
    return TABLE.get(func, probe)


# -- probing unknown functions --------------------------------------------------------------------
ALIASES = {"aten.alias", "aten.detach", "aten.clone", "aten._to_copy", "aten.lift_fresh", "aten.scalar_tensor"}


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[Any] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func)
        return func(*args, **(kwargs or {}))


def _elementwise(op: Any) -> bool:
    return torch.Tag.pointwise in op.tags or str(op.overloadpacket) in ALIASES


def probe(func: Any, args: tuple, kwargs: dict) -> tuple[Any, Handler]:
    """Run ``func`` once under an ATen recorder and remember how to treat it."""
    with _Recorder() as recorder:
        result = func(*args, **kwargs)
    if recorder.ops:
        handler = pointwise if all(_elementwise(op) for op in recorder.ops) else unknown
    elif args and result is args[0]:
        handler = identity
    elif not any(isinstance(t, torch.Tensor) for t in tree_flatten(result)[0]):
        handler = ignore  # x.shape, x.dim(), x.device …
    else:
        return result, unknown  # no ATen op ran, yet a new tensor: do not decide for later calls
    TABLE[func] = handler
    return result, handler
