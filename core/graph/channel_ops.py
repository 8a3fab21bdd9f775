"""How a torch function moves channel atoms from its inputs to its outputs: element-wise ops,
spatial ops, reductions, joining and splitting (shape ops are in :mod:`prunekit.graph.shape_ops`).

A handler gets the tracer and an :class:`OpCall` (the function's name, arguments, result and the
tags of its tracked inputs) and tags the result. Which function gets which handler is the table
in :mod:`prunekit.graph.op_table`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._pytree import tree_flatten

from .atoms import Tag

if TYPE_CHECKING:
    from .tracer import ChannelTracer


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


def same_as_input(tr: ChannelTracer, call: OpCall, pin_others: bool = True) -> Tag | None:
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
    tagged = [(t, tag) for t in tensors if (tag := tr.tag(t)) is not None]
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
        elif (owner := tr.model_tensor(tensor)) is not None and tensor.shape[aligned] == len(base):
            tr.tensor_member(owner, base)
        else:
            tr.atoms.pin(base, f"are combined with a fixed per-channel tensor by op {call.name}")
    for tensor in call.outputs:
        tr.set(tensor, pos, base)


def ignore(tr: ChannelTracer, call: OpCall) -> None:
    """The result does not carry the input's channels (``zeros_like``, ``new_empty`` …)."""


def unknown(tr: ChannelTracer, call: OpCall) -> None:
    tr.pin_unknown(call.name, call.tags)


# -- spatial ops: act on the trailing dims, each channel alone -------------------------------------
def spatial(n: int | None) -> Handler:
    """Pooling / interpolation over the last ``n`` dims (``None``: all but batch and channel)."""

    def handler(tr: ChannelTracer, call: OpCall) -> None:
        tag = same_as_input(tr, call)
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
    tag = same_as_input(tr, call)
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
        tag = same_as_input(tr, call)
        if tag is None:
            return
        dim = call.arg(index, "dim", default)
        if dim is None or wrap_dim(dim, call.x.dim()) == tag.dim:
            tr.pin_unknown(call.name, [tag])
            return
        for out in call.outputs:
            tr.set(out, tag.dim, tag.atoms)

    return handler


# -- reductions -----------------------------------------------------------------------------------
def reduction(dim_index: int, additive: bool) -> Handler:
    """sum/mean/amax…: off the channel dim the channels survive; over it, only a sum is safe."""

    def handler(tr: ChannelTracer, call: OpCall) -> None:
        tag = same_as_input(tr, call)
        if tag is None:
            return None
        ndim = call.x.dim()
        dim = call.arg(dim_index, "dim")
        if isinstance(dim, torch.Tensor):
            return pointwise(tr, call)  # torch.max(a, b) is element-wise
        dims = (
            set(range(ndim))
            if dim is None or dim == ()
            else {wrap_dim(d, ndim) for d in (dim if isinstance(dim, (list, tuple)) else [dim])}
        )
        if tag.dim in dims:
            if not additive:
                tr.pin_unknown(call.name + " (over channels)", [tag])
            return None  # a sum over channels: each channel only adds its share
        out = call.outputs[0]
        new = tag.dim if out.dim() == ndim else tag.dim - sum(1 for d in dims if d < tag.dim)
        for out in call.outputs:
            tr.set(out, new, tag.atoms)
        return None

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
            if tag is not None:
                atoms += tag.atoms
            elif tensor.dim() == out.dim():
                untracked = f"come from a tensor op {call.name} joins them with, which is not traced"
                atoms += tr.atoms.new_space(f"<{call.name} operand>", tensor.shape[dim], untracked)
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
            tr.atoms.pin(base, f"are joined with a tensor that is not traced by op {call.name}")
    tr.set(call.outputs[0], out_dim, base)


def split(tr: ChannelTracer, call: OpCall) -> None:
    """chunk / tensor_split(n): equal pieces of the channel dim are coupled position by position,
    so they stay equal after pruning. Fixed sizes (split, unbind) cannot adapt and are pinned;
    each piece keeps its channels' identity, so what meets a piece later is coupled to them."""
    tag = same_as_input(tr, call)
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
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    slices = [tag.atoms[start : start + size] for start, size in zip(starts, sizes)]
    if not counted or len(set(sizes)) != 1:
        tr.atoms.pin(tag.atoms, f"are split into pieces of fixed size by op {call.name}")
        if name == "unbind":
            return  # the pieces have no channel dim left
    else:
        for piece_atoms in slices[1:]:
            tr.atoms.union_all(slices[0], piece_atoms)
    for piece, piece_atoms in zip(pieces, slices):
        tr.set(piece, dim, piece_atoms)
