"""How each torch function moves channel atoms from its inputs to its outputs.

A handler gets the tracer and an :class:`OpCall` (the function's name, arguments, result and the
tags of its tracked inputs) and tags the result. Functions not in the tables are probed once:
if every ATen op they run is element-wise (``torch.Tag.pointwise``), they broadcast like ``add``;
otherwise they are unknown and pin the channels they touch.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .atoms import Tag

if TYPE_CHECKING:
    from .tracer import ChannelTracer

T = torch.Tensor


@dataclass
class OpCall:
    name: str
    func: Any
    args: tuple
    kwargs: dict
    result: Any
    tags: list[Tag]

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        if name in self.kwargs:
            return self.kwargs[name]
        return self.args[index] if len(self.args) > index else default

    @property
    def x(self) -> Any:
        return self.args[0] if self.args else self.kwargs.get("input")

    @property
    def outputs(self) -> list[torch.Tensor]:
        return [t for t in tree_flatten(self.result)[0] if isinstance(t, torch.Tensor)]


Handler = Callable[["ChannelTracer", OpCall], None]


def wrap_dim(dim: int, ndim: int) -> int:
    return dim % ndim if ndim else 0


def _same_as_input(tr: ChannelTracer, call: OpCall, pin_others: bool = True) -> Tag | None:
    """The tag of the op's main input. Other tracked inputs are pinned unless only their shape
    matters (``view_as``): we do not know how the op combines them."""
    tag = tr.tag(call.x)
    others = [t for t in call.tags if t is not tag]
    if tag is None or (others and pin_others):
        tr.pin_unknown(call.name, call.tags if tag is None else others)
    return tag


# -- element-wise ---------------------------------------------------------------------------------
def pointwise(tr: ChannelTracer, call: OpCall) -> None:
    """Broadcasting element-wise op: aligned channels of all operands are joined."""
    out = call.outputs[0]
    tensors = [t for t in tree_flatten((call.args, call.kwargs))[0] if isinstance(t, torch.Tensor)]
    tagged = [(t, tr.tag(t)) for t in tensors if tr.tag(t) is not None]
    positions = {out.dim() - (t.dim() - tag.dim) for t, tag in tagged}
    size = out.shape[min(positions)] if len(positions) == 1 else None
    base = next((tag.atoms for _, tag in tagged if len(tag.atoms) == size), None)
    if base is None:  # channels on different dims, or one channel broadcast over many
        tr.pin_unknown(call.name, call.tags)
        return
    pos = positions.pop()
    for tensor in tensors:
        aligned = pos - (out.dim() - tensor.dim())
        if aligned < 0 or tensor.shape[aligned] == 1:
            continue  # broadcast along channels
        tag = tr.tag(tensor)
        if tag is not None:
            tr.atoms.union_all(base, tag.atoms)
        else:
            tr.atoms.pin(base, f"op {call.name} combines the channels with a fixed per-channel tensor")
    for tensor in call.outputs:
        tr.set(tensor, pos, base)


def identity(tr: ChannelTracer, call: OpCall) -> None:
    tag = _same_as_input(tr, call, pin_others=False)
    if tag is None:
        return
    for out in call.outputs:
        if out.shape == call.x.shape:
            tr.set(out, tag.dim, tag.atoms)
        else:
            reshape(tr, OpCall(call.name, call.func, (call.x,), {}, out, [tag]))


def ignore(tr: ChannelTracer, call: OpCall) -> None:
    """The result does not carry the input's channels (``zeros_like``, ``new_empty`` …)."""


def unknown(tr: ChannelTracer, call: OpCall) -> None:
    tr.pin_unknown(call.name, call.tags)


# -- spatial ops: act on the trailing dims, each channel alone -------------------------------------
def spatial(n: int | None) -> Handler:
    """Pooling / interpolation over the last ``n`` dims (``None``: all but batch and channel)."""

    def handler(tr: ChannelTracer, call: OpCall) -> None:
        tag = _same_as_input(tr, call)
        if tag is None:
            return
        ndim = call.x.dim()
        k = ndim - 2 if n is None else n
        if tag.dim >= ndim - k:
            tr.pin_unknown(call.name, [tag])
            return
        for out in call.outputs:
            tr.set(out, tag.dim, tag.atoms)

    return handler


def pad(tr: ChannelTracer, call: OpCall) -> None:
    tag = _same_as_input(tr, call)
    if tag is None:
        return
    amounts = list(call.arg(1, "pad", ()))
    ndim = call.x.dim()
    from_end = ndim - 1 - tag.dim
    if 2 * from_end + 1 < len(amounts) and (amounts[2 * from_end] or amounts[2 * from_end + 1]):
        tr.pin_unknown(call.name, [tag])
        return
    tr.set(call.result, tag.dim, tag.atoms)


def along_dim(index: int, default: int | None) -> Handler:
    """Ops that mix values along one dim (softmax, normalize, cumsum): fine unless it is the channel dim."""

    def handler(tr: ChannelTracer, call: OpCall) -> None:
        tag = _same_as_input(tr, call)
        if tag is None:
            return
        dim = call.arg(index, "dim", default)
        if dim is None or wrap_dim(dim, call.x.dim()) == tag.dim:
            tr.pin_unknown(call.name, [tag])
            return
        for out in call.outputs:
            tr.set(out, tag.dim, tag.atoms)

    return handler


# -- shape ops ------------------------------------------------------------------------------------
def reshape(tr: ChannelTracer, call: OpCall) -> None:
    """view/reshape/flatten/squeeze…: the channel dim survives, or merges with the dims after it."""
    tag = _same_as_input(tr, call, pin_others=False)
    if tag is None:
        return
    out = call.outputs[0]
    found = reshaped(tuple(call.x.shape), tag.dim, tuple(out.shape))
    if found is None:
        tr.pin_unknown(call.name, [tag])
        return
    dim, repeat = found
    tr.set(out, dim, tuple(a for a in tag.atoms for _ in range(repeat)))


def reshaped(before: tuple[int, ...], c: int, after: tuple[int, ...]) -> tuple[int, int] | None:
    """Where channel dim ``c`` of shape ``before`` lands in ``after``: ``(dim, elements per channel)``.

    The channel dim survives when the dims before it keep their product and it is either kept
    or merged with the dims right after it (flatten); any other change splits channels.
    """
    channels = before[c]
    if channels == 1:
        return (c, 1) if before == after else None
    leading, acc = math.prod(before[:c]), 1
    for d, size in enumerate(after):
        if acc == leading and size % channels == 0 and _merges(before[c + 1:], size // channels):
            return d, size // channels
        acc *= size
        if acc > leading:
            return None
    return None


def _merges(trailing: tuple[int, ...], repeat: int) -> bool:
    """True when ``repeat`` is the product of the first k trailing dims, for some k >= 0."""
    acc = 1
    for size in (1, *trailing):
        acc *= size
        if acc == repeat:
            return True
    return False


def permute(tr: ChannelTracer, call: OpCall) -> None:
    tag = _same_as_input(tr, call)
    if tag is None:
        return
    ndim = call.x.dim()
    order = permutation(call, ndim)
    tr.set(call.result, order.index(tag.dim), tag.atoms)


def permutation(call: OpCall, ndim: int) -> list[int]:
    """The source dim of each output dim."""
    name = call.name.rsplit(".", 1)[-1]
    if name == "permute":
        dims = call.arg(1, "dims")
        dims = dims if isinstance(dims, (list, tuple)) else call.args[1:]
        return [wrap_dim(d, ndim) for d in dims]
    order = list(range(ndim))
    if name == "t":
        return order[::-1]
    if name in ("transpose", "swapaxes", "swapdims"):
        a = wrap_dim(call.arg(1, "dim0", call.kwargs.get("axis0")), ndim)
        b = wrap_dim(call.arg(2, "dim1", call.kwargs.get("axis1")), ndim)
        order[a], order[b] = order[b], order[a]
        return order
    src, dst = call.arg(1, "source"), call.arg(2, "destination")  # movedim / moveaxis
    src = [wrap_dim(d, ndim) for d in (src if isinstance(src, (list, tuple)) else [src])]
    dst = [wrap_dim(d, ndim) for d in (dst if isinstance(dst, (list, tuple)) else [dst])]
    result = [-1] * ndim
    for s, d in zip(src, dst):
        result[d] = s
    rest = iter(i for i in range(ndim) if i not in src)
    return [r if r >= 0 else next(rest) for r in result]


def expand(tr: ChannelTracer, call: OpCall) -> None:
    tag = _same_as_input(tr, call, pin_others=False)
    if tag is None:
        return
    out = call.outputs[0]
    dim = tag.dim + out.dim() - call.x.dim()
    if out.shape[dim] == len(tag.atoms):
        tr.set(out, dim, tag.atoms)
    else:
        tr.pin_unknown(call.name, [tag])


def repeat(tr: ChannelTracer, call: OpCall) -> None:
    tag = _same_as_input(tr, call)
    if tag is None:
        return
    out = call.outputs[0]
    dim = tag.dim + out.dim() - call.x.dim()
    times = out.shape[dim] // len(tag.atoms)
    tr.set(out, dim, tag.atoms * times)  # tiled, like cat([x] * times)


def flip(tr: ChannelTracer, call: OpCall) -> None:
    tag = _same_as_input(tr, call)
    if tag is None:
        return
    dims = call.arg(1, "dims", ())
    dims = [wrap_dim(d, call.x.dim()) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    tr.set(call.result, tag.dim, tag.atoms[::-1] if tag.dim in dims else tag.atoms)


def index_along(index: int) -> Handler:
    """index_select / narrow / select with the dim at argument ``index``: fine off the channel dim."""

    def handler(tr: ChannelTracer, call: OpCall) -> None:
        tag = _same_as_input(tr, call)
        if tag is None:
            return
        dim = wrap_dim(call.arg(index, "dim"), call.x.dim())
        out = call.outputs[0]
        if dim == tag.dim and not (call.name.endswith("narrow") and out.shape == call.x.shape):
            tr.pin_unknown(call.name + " (channel selection)", [tag])
            return
        shift = 1 if out.dim() < call.x.dim() and dim < tag.dim else 0
        tr.set(out, tag.dim - shift, tag.atoms)

    return handler


def getitem(tr: ChannelTracer, call: OpCall) -> None:
    tag = _same_as_input(tr, call)
    if tag is None:
        return
    x, index = call.args[0], call.args[1]
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(i, (torch.Tensor, list)) or isinstance(i, bool) for i in items):
        tr.pin_unknown(call.name, [tag])  # advanced indexing
        return
    given = sum(1 for i in items if i is not None and i is not Ellipsis)
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = [slice(None)] * (x.dim() - given)
    items += [slice(None)] * (x.dim() - sum(1 for i in items if i is not None))
    src = out_dim = 0
    for item in items:
        if item is None:
            out_dim += 1
            continue
        if src == tag.dim:
            if not isinstance(item, slice) or item.indices(x.shape[src]) != (0, x.shape[src], 1):
                tr.pin_unknown(call.name + " (channel slice)", [tag])
                return
            tr.set(call.result, out_dim, tag.atoms)
            return
        if isinstance(item, slice):
            out_dim += 1
        src += 1


# -- reductions -----------------------------------------------------------------------------------
def reduction(dim_index: int, additive: bool) -> Handler:
    """sum/mean/amax…: off the channel dim the channels survive; over it, only a sum is safe."""

    def handler(tr: ChannelTracer, call: OpCall) -> None:
        tag = _same_as_input(tr, call)
        if tag is None:
            return
        ndim = call.x.dim()
        dim = call.arg(dim_index, "dim")
        if isinstance(dim, torch.Tensor):
            return pointwise(tr, call)  # torch.max(a, b) is element-wise
        dims = set(range(ndim)) if dim is None or dim == () else {
            wrap_dim(d, ndim) for d in (dim if isinstance(dim, (list, tuple)) else [dim])}
        if tag.dim in dims:
            if not additive:
                tr.pin_unknown(call.name + " (over channels)", [tag])
            return  # a sum over channels: each channel only adds its share
        out = call.outputs[0]
        new = tag.dim if out.dim() == ndim else tag.dim - sum(1 for d in dims if d < tag.dim)
        for out in call.outputs:
            tr.set(out, new, tag.atoms)

    return handler


# -- joining and splitting ---------------------------------------------------------------------
def cat(tr: ChannelTracer, call: OpCall) -> None:
    tensors = list(call.arg(0, "tensors"))
    out = call.outputs[0]
    dim = wrap_dim(call.arg(1, "dim", 0), out.dim())
    tags = [tr.tag(t) for t in tensors]
    present = [t for t in tags if t is not None]
    if any(t.dim != present[0].dim for t in present):
        tr.pin_unknown(call.name, present)
        return
    if present[0].dim == dim:  # concatenating channels: atoms follow at their offsets
        atoms: tuple[int, ...] = ()
        for tensor, tag in zip(tensors, tags):
            if tag is None and tensor.dim() == out.dim():
                tag = Tag(dim, tr.atoms.new_space(f"<{call.name} operand>", tensor.shape[dim], "comes from an untracked tensor"))
            atoms += tag.atoms if tag else ()
        tr.set(out, dim, atoms)
    else:
        _join_aligned(tr, call, tensors, tags, present[0].dim, present[0].dim)


def stack(tr: ChannelTracer, call: OpCall) -> None:
    tensors = list(call.arg(0, "tensors"))
    tags = [tr.tag(t) for t in tensors]
    present = [t for t in tags if t is not None]
    if any(t.dim != present[0].dim for t in present):
        tr.pin_unknown(call.name, present)
        return
    c = present[0].dim
    new_dim = wrap_dim(call.arg(1, "dim", 0), tensors[0].dim() + 1)
    _join_aligned(tr, call, tensors, tags, c, c + (1 if new_dim <= c else 0))


def _join_aligned(tr: ChannelTracer, call: OpCall, tensors: list, tags: list, c: int, out_dim: int) -> None:
    base = next(t for t in tags if t is not None).atoms
    for tensor, tag in zip(tensors, tags):
        if tag is not None:
            tr.atoms.union_all(base, tag.atoms)
        elif tensor.dim() > c and tensor.shape[c] > 1:
            tr.atoms.pin(base, f"op {call.name} joins the channels with an untracked tensor")
    tr.set(call.outputs[0], out_dim, base)


def split(tr: ChannelTracer, call: OpCall) -> None:
    """chunk / tensor_split(n): equal pieces of the channel dim are coupled position by position,
    so they stay equal after pruning. Fixed sizes (split, unbind) cannot adapt and are pinned."""
    tag = _same_as_input(tr, call)
    if tag is None:
        return
    name = call.name.rsplit(".", 1)[-1]
    dim_index = 1 if name == "unbind" else 2
    dim = wrap_dim(call.arg(dim_index, "dim", 0), call.x.dim())
    pieces = list(call.result)
    if dim != tag.dim:
        shift = 1 if name == "unbind" and dim < tag.dim else 0
        for piece in pieces:
            tr.set(piece, tag.dim - shift, tag.atoms)
        return
    sizes = [p.shape[dim] for p in pieces]
    counted = name == "chunk" or (name == "tensor_split" and isinstance(call.arg(1, "sections"), int))
    if not counted or len(set(sizes)) != 1:
        tr.pin_unknown(f"{call.name} (fixed channel sizes)", [tag])
        return
    size = sizes[0]
    slices = [tag.atoms[i * size:(i + 1) * size] for i in range(len(pieces))]
    for piece_atoms in slices[1:]:
        tr.atoms.union_all(slices[0], piece_atoms)
    for piece, piece_atoms in zip(pieces, slices):
        tr.set(piece, dim, piece_atoms)


# -- the table --------------------------------------------------------------------------------------
ACTIVATIONS = [
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.leaky_relu_, F.elu, F.elu_, F.selu, F.celu, F.gelu,
    F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.hardtanh_, F.softplus, F.softsign,
    F.tanhshrink, F.logsigmoid, F.threshold, torch.relu, torch.relu_, torch.sigmoid, torch.tanh,
    T.relu, T.relu_, T.sigmoid, T.sigmoid_, T.tanh, T.tanh_,
]
IDENTITIES = [
    T.contiguous, T.clone, torch.clone, T.detach, torch.detach, T.to, T.float, T.double, T.half,
    T.bfloat16, T.type, T.type_as, T.cpu, T.cuda, T.requires_grad_, T.detach_,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
]
RESHAPES = [
    T.view, T.reshape, torch.reshape, T.view_as, T.reshape_as, T.flatten, torch.flatten, T.unflatten,
    torch.unflatten, T.squeeze, torch.squeeze, T.unsqueeze, torch.unsqueeze, torch.ravel, T.ravel,
]
PERMUTES = [T.permute, torch.permute, T.transpose, torch.transpose, T.swapaxes, torch.swapaxes,
            T.swapdims, torch.swapdims, T.t, torch.t, T.movedim, torch.movedim, T.moveaxis, torch.moveaxis]
IGNORED = [torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like,
           torch.randn_like, torch.randint_like, T.new_zeros, T.new_ones, T.new_empty, T.new_full, T.new_tensor]

TABLE: dict[Any, Handler] = {
    **{f: pointwise for f in ACTIVATIONS},
    **{f: identity for f in IDENTITIES},
    **{f: reshape for f in RESHAPES},
    **{f: permute for f in PERMUTES},
    **{f: ignore for f in IGNORED},
    torch.cat: cat, torch.concat: cat, torch.concatenate: cat, torch.stack: stack,
    torch.chunk: split, T.chunk: split, torch.split: split, T.split: split, torch.tensor_split: split,
    T.tensor_split: split, torch.unbind: split, T.unbind: split,
    T.__getitem__: getitem,
    T.expand: expand, T.expand_as: expand, torch.broadcast_to: expand, T.broadcast_to: expand,
    T.repeat: repeat, torch.flip: flip, T.flip: flip,
    torch.index_select: index_along(1), T.index_select: index_along(1),
    torch.narrow: index_along(1), T.narrow: index_along(1), torch.select: index_along(1), T.select: index_along(1),
    F.pad: pad,
    F.interpolate: spatial(None), F.upsample: spatial(None), F.grid_sample: spatial(None),
    F.max_pool1d: spatial(1), F.max_pool2d: spatial(2), F.max_pool3d: spatial(3),
    F.avg_pool1d: spatial(1), F.avg_pool2d: spatial(2), F.avg_pool3d: spatial(3),
    F.adaptive_avg_pool1d: spatial(1), F.adaptive_avg_pool2d: spatial(2), F.adaptive_avg_pool3d: spatial(3),
    F.adaptive_max_pool1d: spatial(1), F.adaptive_max_pool2d: spatial(2), F.adaptive_max_pool3d: spatial(3),
    F.lp_pool1d: spatial(1), F.lp_pool2d: spatial(2),
    F.softmax: along_dim(1, None), F.log_softmax: along_dim(1, None), torch.softmax: along_dim(1, None),
    T.softmax: along_dim(1, None), T.log_softmax: along_dim(1, None), torch.log_softmax: along_dim(1, None),
    F.normalize: along_dim(2, 1), torch.cumsum: along_dim(1, None), T.cumsum: along_dim(1, None),
    F.batch_norm: unknown, F.layer_norm: unknown, F.group_norm: unknown,  # per-channel weights we cannot cut
}
for _name, _additive in [("sum", True), ("nansum", True), ("mean", False), ("nanmean", False), ("amax", False),
                         ("amin", False), ("max", False), ("min", False), ("std", False), ("var", False),
                         ("prod", False), ("logsumexp", False), ("all", False), ("any", False),
                         ("argmax", False), ("argmin", False), ("median", False)]:
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
