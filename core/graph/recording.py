"""Running a model once to see what its layers receive and return.

The forward runs on the meta device (``torch.func.functional_call`` with meta parameters): only
shapes are computed, no arithmetic. A model with an op that has no meta kernel (or that moves
tensors between devices itself) is run for real instead, under ``no_grad``, and the recording says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from ..errors import PruneError
from ..modes import eval_mode
from .meta_shapes import FastMeta, ShapeError

Size = tuple[int, ...]
#: builds the context a recorded forward runs in, from its arguments and the model's tensors by name
Mode = Callable[[tuple, dict[str, torch.Tensor]], contextlib.AbstractContextManager]


@dataclass
class Call:
    """One call of a leaf layer: its name and the sizes of its first input and output."""

    name: str
    module: nn.Module
    input: Size
    output: Size


@dataclass
class Recording:
    calls: list[Call]
    output: Any
    fallback: str | None = None


def leaves(model: nn.Module, is_leaf: Callable[[str, nn.Module], bool]) -> dict[str, nn.Module]:
    """Modules for which ``is_leaf(name, module)`` holds, not descending into them (names as in
    named_modules)."""
    found: dict[str, nn.Module] = {}
    seen: set[int] = set()

    def walk(module: nn.Module, prefix: str) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        if prefix and is_leaf(prefix, module):
            found[prefix] = module
            return
        for name, child in module.named_children():
            walk(child, f"{prefix}.{name}" if prefix else name)

    walk(model, "")
    if not found and is_leaf("", model):
        found[""] = model
    return found


def tensor_sizes(value: Any) -> list[Size]:
    """The sizes of every tensor in a (nested) output."""
    return [tuple(t.shape) for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)]


def first_tensor(value: Any) -> torch.Tensor | None:
    return next((t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)), None)


def size_of(value: Any) -> Size:
    tensor = first_tensor(value)
    return tuple(tensor.shape) if tensor is not None else ()


def as_args(example_input: Any) -> tuple:
    return tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    named = list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))
    return dict(named)


def _meta_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: torch.empty_like(t, device="meta") for name, t in _state(model).items()}


def _to_meta(value: Any) -> Any:
    return tree_map(lambda t: torch.empty_like(t, device="meta") if isinstance(t, torch.Tensor) else t, value)


class ForwardError(PruneError):
    """The model failed on the example input; ``layer`` is where, when it was inside a layer."""

    def __init__(self, layer: str | None, cause: Exception) -> None:
        self.layer = layer
        where = f" in layer {layer!r}" if layer else ""
        text = str(cause).strip().splitlines()
        super().__init__(
            f"the model failed on the example input{where} ({type(cause).__name__}: {text[0] if text else ''})"
        )


def _materialized(value: Any) -> Any:
    """Meta tensors (an input given by shape only) as zeros, for a real forward."""
    return tree_map(
        lambda t: torch.zeros_like(t, device="cpu") if isinstance(t, torch.Tensor) and t.is_meta else t, value
    )


def record(
    model: nn.Module,
    example_input: Any,
    layers: dict[str, nn.Module],
    mode: Mode | None = None,
) -> Recording:
    """Run ``model`` once in eval mode and record every call of the modules in ``layers``.

    ``mode(args, state)`` builds a context (e.g. a TorchFunctionMode) entered around the forward
    on ``args`` with the model's parameters and buffers ``state`` (by name, as the forward sees
    them); it is built afresh if the meta forward fails and the model is run for real.
    A model that fails on the example input is bad input: :class:`ForwardError`, naming the
    innermost of ``layers`` that was running.
    """
    active: list[str] = []
    names = {id(m): name for name, m in layers.items()}

    def enter(module: nn.Module, args: tuple) -> None:
        active.append(names[id(module)])

    def leave(module: nn.Module, args: tuple, result: Any) -> None:
        active.pop()  # a forward hook must return None, or it replaces the output

    handles = [m.register_forward_pre_hook(enter) for m in layers.values()]
    handles += [m.register_forward_hook(leave) for m in layers.values()]
    try:
        return _record(model, example_input, layers, mode)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:
        raise ForwardError(active[-1] if active else None, exc) from exc
    finally:
        for h in handles:
            h.remove()


def _record(
    model: nn.Module,
    example_input: Any,
    layers: dict[str, nn.Module],
    mode: Mode | None,
) -> Recording:
    calls: list[Call] = []
    names = {id(m): name for name, m in layers.items()}

    def hook(module: nn.Module, args: tuple, result: Any) -> None:
        calls.append(Call(names[id(module)], module, size_of(args), size_of(result)))

    handles = [m.register_forward_hook(hook) for m in layers.values()]
    args = as_args(example_input)
    try:
        with eval_mode(model), torch.no_grad():
            try:
                meta_args, meta_state = _to_meta(args), _meta_state(model)
                with FastMeta(), mode(meta_args, meta_state) if mode else contextlib.nullcontext():
                    output = torch.func.functional_call(model, meta_state, meta_args, strict=False)
                return Recording(calls, output)
            except ShapeError:
                raise  # the input does not fit: a real forward would fail the same way
            except Exception as exc:  # an op without a meta kernel, a device move, .item() ...
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            calls.clear()
            args = _materialized(args)
            with mode(args, _state(model)) if mode else contextlib.nullcontext():
                output = model(*args)
            return Recording(calls, output, fallback=f"shape-only pass failed ({reason}); ran a real forward")
    finally:
        for h in handles:
            h.remove()
