"""Checking a layer type against real forwards of its module."""

from __future__ import annotations

import copy
import random

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import PruneError
from ..layer_type import Flow, LayerShape, LayerType
from .contract import ContractError, close_enough, require


def check_layer_type(layer_type: LayerType, module: nn.Module, example_input: torch.Tensor, seed: int = 0) -> None:
    """``layer_type`` against real forwards of ``module`` on ``example_input``: its declared flow,
    MACs (where PyTorch's FLOP counter sees the op), parameters before and after random cuts, and
    ``prune_out``/``prune_in`` against the unpruned module with the removed channels zeroed."""
    name = getattr(layer_type, "name", type(layer_type).__name__)
    require(layer_type.declares_flow(), f"layer type {name!r} does not declare flow()")
    counted = layer_type.module
    if isinstance(counted, str):  # an import path: the module's class or a base class must be it
        fits = any(f"{c.__module__}.{c.__qualname__}" == counted for c in type(module).__mro__)
    else:
        fits = isinstance(module, counted)
    require(fits, f"layer type {name!r} is for {getattr(counted, '__name__', counted)}, not {type(module).__name__}")
    module.eval()
    with torch.no_grad():
        out = module(example_input)
    shape = _shape(layer_type, example_input, out)
    _check_flow(layer_type, module, shape)
    _check_counts(layer_type, module, example_input, shape, "the unpruned module")
    rng = random.Random(seed)
    flow = layer_type.flow(module)
    # a producer's inputs and outputs are cut apart; a channel-wise or depthwise layer's together, by prune_out
    roles = {
        Flow.PRODUCER: ("out", "in"),
        Flow.GROUPED: ("out", "in"),
        Flow.CHANNELWISE: ("out",),
        Flow.DEPTHWISE: ("out",),
    }.get(flow, ())
    for role in roles:
        if not layer_type.can_cut(role):
            require(
                _refuses(layer_type, module, role),
                f"layer type {name!r}: can_cut({role!r}) is False, yet prune_{role} does not refuse",
            )
            continue
        keep_in, keep_out = _random_cut(layer_type, module, shape, role, rng)
        _check_cut(layer_type, module, example_input, out, role, keep_in, keep_out)


def _shape(layer_type: LayerType, x: torch.Tensor, out: torch.Tensor) -> LayerShape:
    return LayerShape(tuple(x.shape), tuple(out.shape), x.shape[layer_type.in_dim], out.shape[layer_type.out_dim])


def _check_flow(layer_type: LayerType, module: nn.Module, shape: LayerShape) -> None:
    flow, name = layer_type.flow(module), layer_type.name
    if flow is Flow.CHANNELWISE:
        require(
            shape.in_channels == shape.out_channels,
            f"layer type {name!r} declares {type(module).__name__} "
            f"channel-wise, but it turns {shape.in_channels} channels into {shape.out_channels}: a producer?",
        )
    if flow is Flow.DEPTHWISE:
        require(
            shape.out_channels % shape.in_channels == 0,
            f"layer type {name!r} declares a depthwise flow, but "
            f"{shape.out_channels} outputs are no multiple of {shape.in_channels} inputs",
        )


def _check_counts(layer_type: LayerType, module: nn.Module, x: torch.Tensor, shape: LayerShape, what: str) -> None:
    own = sum(p.numel() for p in module.parameters())
    params = layer_type.params(module, shape)
    require(params == own, f"layer type {layer_type.name!r}: params() says {params} for {what}, its tensors hold {own}")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    flops = counter.get_total_flops()
    macs = layer_type.macs(module, shape)
    if flops:  # convolutions and matrix products: PyTorch counts 2 FLOPs per multiply-add
        require(
            macs == flops // 2,
            f"layer type {layer_type.name!r}: macs() says {macs} for {what}, a real forward does {flops // 2}",
        )


def _refuses(layer_type: LayerType, module: nn.Module, role: str) -> bool:
    cut = layer_type.prune_in if role == "in" else layer_type.prune_out
    try:
        cut(copy.deepcopy(module), torch.tensor([0]))
    except PruneError:
        return True
    return False


def _random_cut(
    layer_type: LayerType, module: nn.Module, shape: LayerShape, role: str, rng: random.Random
) -> tuple[list[int] | None, list[int]]:
    """(input channels kept, output channels kept) of a random cut of ``role``."""
    flow = layer_type.flow(module)
    groups = layer_type.groups(module) if flow is Flow.GROUPED else 1  # as many kept in every group
    if role == "in":
        return _subset(shape.in_channels, rng, groups), list(range(shape.out_channels))
    if flow in (Flow.PRODUCER, Flow.GROUPED):
        return None, _subset(shape.out_channels, rng, groups)
    per = shape.out_channels // shape.in_channels if flow is Flow.DEPTHWISE else 1
    block = layer_type.block(module)  # GroupNorm: whole normalisation groups
    kept_blocks = _subset(shape.in_channels // block, rng)
    keep_in = [b * block + i for b in kept_blocks for i in range(block)]  # cut with the outputs
    return keep_in, [c * per + r for c in keep_in for r in range(per)]


def _subset(n: int, rng: random.Random, groups: int = 1) -> list[int]:
    """A random proper subset of ``range(n)``: the same number from each of ``groups`` equal parts."""
    per = n // groups
    require(per >= 2, f"a cut needs at least 2 channels per group, the example has {per}")
    k = rng.randint(1, per - 1)
    return sorted(g * per + c for g in range(groups) for c in rng.sample(range(per), k))


def _check_cut(
    layer_type: LayerType,
    module: nn.Module,
    x: torch.Tensor,
    out: torch.Tensor,
    role: str,
    keep_in: list[int] | None,
    keep_out: list[int],
) -> None:
    """The cut module on the kept inputs equals the full module with the removed inputs zeroed,
    restricted to the kept outputs."""
    name, in_dim, out_dim = layer_type.name, layer_type.in_dim, layer_type.out_dim
    reference, x_cut = out, x
    if keep_in is not None:
        zeroed = torch.zeros_like(x)
        index = torch.tensor(keep_in)
        zeroed.index_copy_(in_dim % x.dim(), index, x.index_select(in_dim, index))
        with torch.no_grad():
            reference = module(zeroed)
        x_cut = x.index_select(in_dim, index)
    cut = copy.deepcopy(module)
    (layer_type.prune_in if role == "in" else layer_type.prune_out)(
        cut, torch.tensor(keep_in if role == "in" else keep_out)
    )
    try:
        with torch.no_grad():
            got = cut(x_cut)
    except Exception as exc:
        raise ContractError(
            f"layer type {name!r}: after prune_{role} the module fails on its cut input ({exc}); "
            "does prune_" + role + " update the module's channel attributes?"
        ) from exc
    expected = reference.index_select(out_dim, torch.tensor(keep_out))
    close_enough(got, expected, f"layer type {name!r}: prune_{role} against zeroing the removed channels")
    _check_counts(layer_type, cut, x_cut, _shape(layer_type, x_cut, got), f"the module after prune_{role}")
