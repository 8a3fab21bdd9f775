"""Shape functions for common ops on meta tensors.

PyTorch's meta kernels for batch norm, interpolation, activations and ``cat`` are Python
decompositions that cost milliseconds each and import sympy or dynamo on first use (seconds).
Counting needs shapes only, so :class:`FastMeta` answers those ops from their arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .op_table import ACTIVATIONS

#: ops whose output has the input's shape; their meta kernels are slow Python decompositions
SAME_SHAPE = {F.batch_norm, F.instance_norm, F.dropout, F.dropout2d, *ACTIVATIONS}


class ShapeError(RuntimeError):
    """The example input does not fit the model (wrong dtype, too small, mismatched channels):
    a real forward would fail the same way, so there is nothing to fall back to."""


#: ops a real forward runs on floating-point tensors only
FLOATING_ONLY = {F.batch_norm, F.instance_norm, F.layer_norm, F.group_norm, F.interpolate, F.linear}


def _interpolated_size(x: torch.Tensor, size: Any = None, scale_factor: Any = None, **_: Any) -> list[int]:
    spatial = x.dim() - 2
    if size is not None:
        return list(size) if isinstance(size, (tuple, list)) else [size] * spatial
    scales = scale_factor if isinstance(scale_factor, (tuple, list)) else [scale_factor] * spatial
    return [math.floor(float(n) * float(s)) for n, s in zip(x.shape[2:], scales)]


def _cat(tensors: Any, dim: int = 0, **_: Any) -> torch.Tensor:
    tensors = [t for t in tensors if t.numel() or t.dim() > 1]  # cat skips legacy empty 1-d tensors
    dim = dim % tensors[0].dim()
    size = list(tensors[0].shape)
    for t in tensors:
        if t.dim() != len(size) or any(a != b for i, (a, b) in enumerate(zip(t.shape, size)) if i != dim):
            raise ShapeError(f"cat: sizes {[tuple(t.shape) for t in tensors]} do not match outside dim {dim}")
    size[dim] = sum(t.shape[dim] for t in tensors)
    return tensors[0].new_empty(size)


def _tuple(value: Any, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> torch.Tensor:
    n = weight.dim() - 2
    if x.dtype != weight.dtype:
        raise ShapeError(f"conv: the input is {x.dtype}, the weights {weight.dtype}")
    if x.shape[-n - 1] != weight.shape[1] * groups:
        raise ShapeError(
            f"conv: input has {x.shape[-n - 1]} channels, weight {tuple(weight.shape)} expects "
            f"{weight.shape[1] * groups}"
        )
    kernel, stride, dilation = weight.shape[2:], _tuple(stride, n), _tuple(dilation, n)
    if padding == "same":
        spatial = list(x.shape[-n:])
    else:
        pad = (0,) * n if padding == "valid" else _tuple(padding, n)
        spatial = [
            (i + 2 * p - d * (k - 1) - 1) // s + 1 for i, p, d, k, s in zip(x.shape[-n:], pad, dilation, kernel, stride)
        ]
    if min(spatial, default=1) < 1:
        raise ShapeError(f"conv: input {tuple(x.shape)} is smaller than the kernel {tuple(kernel)} (output {spatial})")
    return x.new_empty((*x.shape[: -n - 1], weight.shape[0], *spatial))


def _pooled(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    # the output-size rule of PyTorch's pooling (pooling_output_shape)
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    return out - 1 if ceil and (out - 1) * s >= size + p else out


def _pool(
    x: torch.Tensor,
    n: int,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
) -> torch.Tensor:
    kernel = _tuple(kernel_size, n)
    stride = _tuple(stride, n) if stride not in (None, [], ()) else kernel
    spatial = [
        _pooled(i, k, s, p, d, ceil_mode)
        for i, k, s, p, d in zip(x.shape[-n:], kernel, stride, _tuple(padding, n), _tuple(dilation, n))
    ]
    if min(spatial, default=1) < 1:
        raise ShapeError(f"pooling: input {tuple(x.shape)} is too small for a window of {kernel} (output {spatial})")
    return x.new_empty((*x.shape[:-n], *spatial))


def _max_pool(n: int):
    def shape(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        out = _pool(x, n, kernel_size, stride, padding, dilation, ceil_mode)
        return (out, out.new_empty(out.shape, dtype=torch.long)) if return_indices else out

    return shape


def _avg_pool(n: int):
    def shape(x, kernel_size, stride=None, padding=0, ceil_mode=False, *_, **__):
        return _pool(x, n, kernel_size, stride, padding, 1, ceil_mode)

    return shape


def _layer_norm(x: torch.Tensor, normalized_shape: Any, *_: Any, **__: Any) -> torch.Tensor:
    shape = tuple(_tuple(normalized_shape, 1))
    if tuple(x.shape[x.dim() - len(shape) :]) != shape:
        raise ShapeError(f"layer_norm: input {tuple(x.shape)} does not end in the normalised shape {shape}")
    return x.new_empty(x.shape)


def _group_norm(x: torch.Tensor, num_groups: int, weight: Any = None, *_: Any, **__: Any) -> torch.Tensor:
    if x.dim() < 2 or x.shape[1] % num_groups:
        raise ShapeError(
            f"group_norm: {x.shape[1] if x.dim() > 1 else 0} channels do not split into {num_groups} groups"
        )
    if weight is not None and weight.shape[0] != x.shape[1]:
        raise ShapeError(f"group_norm: {x.shape[1]} channels, a weight of {weight.shape[0]}")
    return x.new_empty(x.shape)


#: ops whose meta kernels import sympy on first use (a second of start-up) -> shape functions
SHAPE_FUNCTIONS: dict[Any, Callable[..., Any]] = {
    torch.conv1d: _conv,
    torch.conv2d: _conv,
    torch.conv3d: _conv,
    F.max_pool1d: _max_pool(1),
    F.max_pool2d: _max_pool(2),
    F.max_pool3d: _max_pool(3),
    F.avg_pool1d: _avg_pool(1),
    F.avg_pool2d: _avg_pool(2),
    F.avg_pool3d: _avg_pool(3),
    F.layer_norm: _layer_norm,  # Python decompositions: ~3 ms a call
    F.group_norm: _group_norm,
}


class FastMeta(TorchFunctionMode):
    """Answers common ops on meta tensors from their shapes alone, skipping slow meta kernels."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        x = args[0] if args else kwargs.get("input", kwargs.get("tensors"))
        if func is torch.cat and isinstance(x, (list, tuple)) and x and all(t.is_meta for t in x):
            return _cat(*args, **kwargs)
        if isinstance(x, torch.Tensor) and x.is_meta:
            stats = args[1] if len(args) > 1 else kwargs.get("running_mean")
            if func in FLOATING_ONLY and not x.is_floating_point():
                raise ShapeError(f"{func.__name__}: the input is {x.dtype}, not a floating-point tensor")
            if func is F.linear:
                weight = args[1] if len(args) > 1 else kwargs["weight"]
                if x.shape[-1] != weight.shape[1]:
                    raise ShapeError(f"linear: the input has {x.shape[-1]} features, the weight {tuple(weight.shape)}")
                return x.new_empty((*x.shape[:-1], weight.shape[0]))  # >2-d inputs decompose slowly
            if func is F.batch_norm and stats is not None and stats.shape[0] != x.shape[1]:
                raise ShapeError(f"batch_norm: {x.shape[1]} channels, running stats of {stats.shape[0]}")
            if func in SAME_SHAPE:
                return x if kwargs.get("inplace") else x.new_empty(x.shape)
            if func in SHAPE_FUNCTIONS:
                return SHAPE_FUNCTIONS[func](*args, **kwargs)
            if func is F.interpolate:
                size = _interpolated_size(*args, **kwargs)
                return x.new_empty((*x.shape[:2], *size))
        return func(*args, **kwargs)
