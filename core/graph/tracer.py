"""Following channels through a model's real forward.

Layers with a layer type are opaque: a forward hook asks the layer type how channels pass (a
producer creates new ones, a norm or activation passes them through, a depthwise conv repeats
them). Everything between layers — ``torch.cat``, residual adds, reshapes, slicing, pooling,
interpolation — is seen by a ``TorchFunctionMode`` that moves each tensor's channel atoms along
(see :mod:`prunekit.graph.channel_ops`). An op that touches the channel dim in a way we cannot follow pins the
affected atoms: their channels are never removed, and one warning names the op and the layers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode, resolve_name
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

from ..layer_type import Flow, LayerType
from . import op_table
from .atoms import Atoms, Constraint, Tag, segments
from .channel_ops import OpCall, wrap_dim

OUTPUT = "reach the model output"


class ChannelTracer(TorchFunctionMode):
    """Records channel atoms, member layers and pins during one forward pass."""

    def __init__(
        self, layers: dict[str, tuple[nn.Module, LayerType]], approximate: frozenset[str] = frozenset()
    ) -> None:
        super().__init__()
        self.layers = layers
        self.approximate = approximate
        self._names = {id(m): name for name, (m, _) in layers.items()}
        self.start(())

    def start(self, args: tuple, state: dict[str, torch.Tensor] | None = None) -> ChannelTracer:
        """Fresh state for a forward on ``args`` with the model's tensors ``state`` by name (a failed
        shape-only pass may have left some)."""
        self.owned = {id(t): name for name, t in reversed(list((state or {}).items()))}  # first name wins
        self.atoms = Atoms()
        self.tags: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.members: dict[tuple[str, str, int | None], tuple[int, ...]] = {}
        self.calls: dict[str, int] = {}
        self.faults: dict[str, str] = {}  # layer type -> what it declares wrongly
        self.constraints: list[Constraint] = []
        self.channel_dims: dict[tuple[str, int], int] = {}  # (layer, call) -> where an element-wise layer saw channels
        self.approximated: dict[str, str] = {}  # layer -> the approximation its cut makes
        self.depth = 0
        self._pending: list[Tag | None] = []
        self.tag_input(args)
        return self

    # -- tags ------------------------------------------------------------------------------
    def tag(self, tensor: Any) -> Tag | None:
        return self.tags.get(tensor) if isinstance(tensor, torch.Tensor) else None

    def set(self, tensor: Any, dim: int, atoms: tuple[int, ...]) -> None:
        if isinstance(tensor, torch.Tensor) and tensor.dim() > dim and tensor.shape[dim] == len(atoms):
            self.tags[tensor] = Tag(dim, atoms)

    def tag_input(self, value: Any) -> None:
        for tensor in tree_flatten(value)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.dim() >= 2:
                self.set(tensor, 1, self.atoms.new_space("<input>", tensor.shape[1], "are the model input"))

    def pin_output(self, value: Any) -> None:
        for tensor in tree_flatten(value)[0]:
            tag = self.tag(tensor)
            if tag:
                self.atoms.pin(tag.atoms, OUTPUT)

    def pin_unknown(self, name: str, tags: list[Tag]) -> None:
        for tag in tags:
            self.atoms.pin(tag.atoms, f"are mixed or selected by op {name}")

    def model_tensor(self, tensor: torch.Tensor) -> str | None:
        """The name of the parameter or buffer of the model ``tensor`` is, or is a view of, when
        it holds one value per channel along a single dim (a layer scale, a learned bias)."""
        for t in (tensor, tensor._base):
            if t is not None and id(t) in self.owned:
                return self.owned[id(t)] if sum(1 for n in t.shape if n != 1) == 1 else None
        return None

    def tensor_member(self, name: str, atoms: tuple[int, ...]) -> None:
        """Per-channel values of parameter or buffer ``name``: cut with their channels."""
        key = (name, "tensor", None)
        if key in self.members:
            self.atoms.union_all(self.members[key], atoms)
        else:
            self.members[key] = atoms

    # -- layers ----------------------------------------------------------------------------
    def pre_hook(self, module: nn.Module, args: tuple) -> None:
        if self.depth == 0:
            self._pending.append(self.tag(next(iter(tree_flatten(args)[0]), None)))
            others = [self.tag(t) for t in tree_flatten(args)[0][1:]]
            self.pin_unknown(f"{type(module).__name__} (extra input)", [t for t in others if t])
        self.depth += 1

    def hook(self, module: nn.Module, args: tuple, result: Any) -> None:
        self.depth -= 1
        if self.depth:
            return
        name = self._names[id(module)]
        _, rule = self.layers[name]
        tag = self._pending.pop()
        self.calls[name] = self.calls.get(name, -1) + 1
        out = next((t for t in tree_flatten(result)[0] if isinstance(t, torch.Tensor)), None)
        if out is None:
            return
        flow = rule.flow(module)
        on_channels = tag is not None and tag.dim == _dim(rule.in_dim, out)
        if flow is Flow.PRODUCER:
            self._produce(name, rule, tag, out)
        elif flow is Flow.CHANNELWISE:
            self._pass(name, module, rule, tag, out)
        elif flow is Flow.DEPTHWISE and tag is not None and on_channels:
            repeat = out.shape[tag.dim] // len(tag.atoms)
            atoms = tuple(a for a in tag.atoms for _ in range(repeat))
            self._member(name, "dw", atoms)
            self.set(out, tag.dim, atoms)
        elif flow is Flow.GROUPED and tag is not None and on_channels:
            self._grouped(name, rule.groups(module), rule, tag, out)
        elif tag is not None and on_channels and rule.approximation in self.approximate:
            self.approximated[name] = str(rule.approximation)  # cut anyway, as the config allows
            self._member(name, "norm", tag.atoms)
            self.set(out, tag.dim, tag.atoms)
        else:  # opaque, or a channel dim the layer does not act on
            reason = f"are mixed by layer {name} ({type(module).__name__})"
            if tag is not None:
                self.atoms.pin(tag.atoms, reason)
            dim = _dim(rule.out_dim, out)
            self.set(out, dim, self.atoms.new_space(name, out.shape[dim], reason))

    def _produce(self, name: str, rule: LayerType, tag: Tag | None, out: torch.Tensor) -> None:
        if tag is not None:
            if tag.dim == _dim(rule.in_dim, out):
                self._member(name, "in", tag.atoms)
            else:
                self.atoms.pin(tag.atoms, f"are read along another dim by layer {name}")
        dim = _dim(rule.out_dim, out)
        key = (name, "out", None)
        if key not in self.members:
            self._member(name, "out", self.atoms.new_space(name, out.shape[dim]))
        atoms = self.members[key]
        self.set(out, dim, atoms)

    def _grouped(self, name: str, groups: int, rule: LayerType, tag: Tag, out: torch.Tensor) -> None:
        """G producers side by side: inputs and outputs each lose as many channels per group."""
        self._member(name, "in", tag.atoms)
        self.constraints.append(Constraint("balance", name, segments(tag.atoms, groups)))
        dim = _dim(rule.out_dim, out)
        key = (name, "out", None)
        if key not in self.members:
            atoms = self.atoms.new_space(name, out.shape[dim])
            self._member(name, "out", atoms)
            self.constraints.append(Constraint("balance", name, segments(atoms, groups)))
        self.set(out, dim, self.members[key])

    def _pass(self, name: str, module: nn.Module, rule: LayerType, tag: Tag | None, out: torch.Tensor) -> None:
        if tag is None:
            return
        if not rule.elementwise and tag.dim != _dim(rule.in_dim, out):
            self.atoms.pin(tag.atoms, f"are acted on along another dim by layer {name}")
            return
        if out.shape[tag.dim] != len(tag.atoms):  # a layer type that declares the wrong flow
            self._misdeclared(name, module, rule, tag, out)
            return
        if rule.block(module) > 1:  # GroupNorm: whole normalisation groups only
            self.constraints.append(
                Constraint("blocks", name, segments(tag.atoms, len(tag.atoms) // rule.block(module)))
            )
        if any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False)):
            self._member(name, "norm", tag.atoms)  # per-channel state to cut (BN statistics, PReLU slopes)
        else:  # stateless (activation, pooling): a shared one sees different channels at each call
            self.members[(name, "pass", self.calls[name])] = tag.atoms
            if tag.dim != _dim(rule.in_dim, out):  # an activation in a channels-last block
                self.channel_dims[(name, self.calls[name])] = tag.dim - out.dim()
        self.set(out, tag.dim, tag.atoms)

    def _misdeclared(self, name: str, module: nn.Module, rule: LayerType, tag: Tag, out: torch.Tensor) -> None:
        """Pin the channels around a "channel-wise" layer that changes the channel count."""
        self.faults[rule.name] = (
            f"layer type {rule.name!r} declares {type(module).__name__} channel-wise, but layer {name} turns "
            f"{len(tag.atoms)} channels into {out.shape[tag.dim]}; its channels are left unprunable (declare "
            "flow() PRODUCER or OPAQUE)"
        )
        reason = f"meet layer {name}, whose layer type {rule.name!r} declares the wrong flow"
        self.atoms.pin(tag.atoms, reason)
        self.set(out, tag.dim, self.atoms.new_space(name, out.shape[tag.dim], reason))

    def _member(self, name: str, role: str, atoms: tuple[int, ...]) -> None:
        rule = self.layers[name][1]
        if not rule.can_cut(role):  # a third-party layer type without surgery: keep its channels
            side = "input" if role == "in" else "output"
            self.atoms.pin(atoms, f"reach layer {name}, whose layer type {rule.name!r} cannot remove {side} channels")
        key = (name, role, None)
        if key in self.members:  # a shared layer called again: its channels are the same ones
            self.atoms.union_all(self.members[key], atoms)
        else:
            self.members[key] = atoms

    # -- functions between layers -------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth:
            return func(*args, **kwargs)
        handler = op_table.handler_for(func)
        if handler is op_table.probe:
            result, handler = op_table.probe(func, args, kwargs)
        else:
            result = func(*args, **kwargs)
        inputs = [self.tag(t) for t in tree_flatten((args, kwargs))[0]]
        tags = [t for t in inputs if t is not None]
        if tags and any(isinstance(t, torch.Tensor) for t in tree_flatten(result)[0]):
            name = resolve_name(func) or getattr(func, "__name__", str(func))
            handler(self, OpCall(name, func, args, kwargs, result, tags))
        return result


def _dim(dim: int, tensor: torch.Tensor) -> int:
    return wrap_dim(dim, tensor.dim())
