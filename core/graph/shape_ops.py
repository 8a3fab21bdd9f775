"""How shape ops move channel atoms: views, reshapes, permutations, expansion, flips and indexing.

The channel dim survives a reshape that keeps the dims before it and keeps it or merges it with
the dims after it (flatten); selecting or slicing along the channel dim pins the channels.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .channel_ops import Handler, OpCall, same_as_input, wrap_dim

if TYPE_CHECKING:
    from .tracer import ChannelTracer


def identity(tr: ChannelTracer, call: OpCall) -> None:
    tag = same_as_input(tr, call, pin_others=False)
    if tag is None:
        return
    for out in call.outputs:
        if out.shape == call.x.shape:
            tr.set(out, tag.dim, tag.atoms)
        else:
            reshape(tr, OpCall(call.name, call.func, (call.x,), {}, out, [tag]))


def reshape(tr: ChannelTracer, call: OpCall) -> None:
    """view/reshape/flatten/squeeze…: the channel dim survives, or merges with the dims after it."""
    tag = same_as_input(tr, call, pin_others=False)
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
        if acc == leading and size % channels == 0 and _merges(before[c + 1 :], size // channels):
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
    tag = same_as_input(tr, call)
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
    tag = same_as_input(tr, call, pin_others=False)
    if tag is None:
        return
    out = call.outputs[0]
    dim = tag.dim + out.dim() - call.x.dim()
    if out.shape[dim] == len(tag.atoms):
        tr.set(out, dim, tag.atoms)
    else:
        tr.pin_unknown(call.name, [tag])


def repeat(tr: ChannelTracer, call: OpCall) -> None:
    tag = same_as_input(tr, call)
    if tag is None:
        return
    out = call.outputs[0]
    dim = tag.dim + out.dim() - call.x.dim()
    times = out.shape[dim] // len(tag.atoms)
    tr.set(out, dim, tag.atoms * times)  # tiled, like cat([x] * times)


def flip(tr: ChannelTracer, call: OpCall) -> None:
    tag = same_as_input(tr, call)
    if tag is None:
        return
    dims = call.arg(1, "dims", ())
    dims = [wrap_dim(d, call.x.dim()) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    tr.set(call.result, tag.dim, tag.atoms[::-1] if tag.dim in dims else tag.atoms)


def index_along(index: int) -> Handler:
    """index_select / narrow / select with the dim at argument ``index``: fine off the channel dim."""

    def handler(tr: ChannelTracer, call: OpCall) -> None:
        tag = same_as_input(tr, call)
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
    tag = same_as_input(tr, call)
    if tag is None:
        return
    x, index = call.args[0], call.args[1]
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(i, (torch.Tensor, list, bool)) for i in items):
        tr.pin_unknown(call.name, [tag])  # advanced indexing
        return
    given = sum(1 for i in items if i is not None and i is not Ellipsis)
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at : at + 1] = [slice(None)] * (x.dim() - given)
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
