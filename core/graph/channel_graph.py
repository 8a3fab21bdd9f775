"""The channel dependency graph: which channels of which layers must be removed together.

``trace(model, example_input)`` runs the model once (shape-only where possible) under the channel
tracer and turns its atoms into groups. A group is every set of producers whose channels are
coupled (a conv and everything added to it), with its *members*: each (layer, role) and, for each
of the layer's channels in that role, the group channel it belongs to — including the offset of a
tensor inside every ``torch.cat``.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import PruneError, suggest
from ..layer_type import LayerType
from ..plugin_manager import Manager
from ..records import Traversal
from .atoms import Atoms
from .recording import Call, record, tensor_sizes
from .rules import Overrides, Rule, Rules, channels
from .tracer import ChannelTracer
from .traversal import traversal_of

#: roles whose channels are the layer's output channels (named by ``pk.prune``)
OUTPUT_ROLES = ("out", "norm", "dw")


@dataclass(frozen=True)
class Member:
    """Channels ``local`` of ``layer`` in ``role`` are group channels ``channel`` (position by position).

    Roles: ``out`` (a producer's outputs), ``in`` (a consumer's inputs), ``norm`` (a channel-wise
    layer with per-channel state), ``dw`` (a depthwise convolution's channels), ``pass``
    (a channel-wise layer without state: it only changes size, at call number ``call``).
    """

    layer: str
    role: str
    local: tuple[int, ...]
    channel: tuple[int, ...]
    call: int | None = None


@dataclass
class Group:
    id: int
    channels: int
    members: list[Member]
    pinned: dict[int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def prunable(self) -> list[int]:
        """Channels that may be removed."""
        if not any(m.role in ("out", "dw") for m in self.members):
            return []
        return [c for c in range(self.channels) if c not in self.pinned]

    @property
    def producers(self) -> list[str]:
        return [m.layer for m in self.members if m.role == "out"]

    def __repr__(self) -> str:
        layers = sorted({f"{m.layer}:{m.role}" for m in self.members})
        return f"Group(id={self.id}, channels={self.channels}, prunable={len(self.prunable)}, members={layers})"


@dataclass
class LayerNode:
    name: str
    module: nn.Module
    rule: Rule
    calls: list[Call]

    @property
    def layer_type(self) -> LayerType:
        """The layer type that cuts this layer (layers counted by a cost override are never cut)."""
        if not isinstance(self.rule, LayerType):
            raise PruneError(f"layer {self.name!r} is counted by a cost override, which cannot cut it")
        return self.rule

    def channels(self, role: str) -> int:
        call = self.calls[0]
        if role == "in":
            return channels(call.input, self.rule.in_dim)
        return channels(call.output, self.rule.out_dim)


@dataclass
class ChannelGraph:
    groups: list[Group]
    layers: dict[str, LayerNode]
    params: int
    traversal: Traversal = field(default_factory=lambda: Traversal("default"))
    warnings: list[str] = field(default_factory=list)
    fallback: str | None = None
    #: the example input the graph was traced on, and the sizes of the model's outputs there
    example: Any = None
    output_sizes: list[tuple[int, ...]] = field(default_factory=list)

    def members_of(self, layer: str, roles: Iterable[str] = OUTPUT_ROLES) -> list[tuple[Group, Member]]:
        return [(g, m) for g in self.groups for m in g.members if m.layer == layer and m.role in roles]

    def output_channels(self, layer: str) -> dict[int, tuple[Group, int]]:
        """For each output channel of ``layer``: its group and the channel within the group."""
        if layer not in self.layers:
            raise PruneError(f"no layer {layer!r} in the model; {suggest(layer, self.layers)}")
        found = {}
        for group, member in self.members_of(layer):
            found.update({local: (group, ch) for local, ch in zip(member.local, member.channel)})
        return found


def trace(
    model: nn.Module,
    example_input: Any,
    protected: Iterable[str] = (),
    overrides: Overrides | None = None,
    traversal: Traversal | None = None,
    plugins: Manager | None = None,
) -> ChannelGraph:
    """Trace ``model`` on ``example_input`` into a :class:`ChannelGraph`.

    ``protected`` layers (and the traversal's) keep all their output channels; layers whose
    channels reach the model output are protected anyway. ``plugins`` is the plugin manager to
    resolve layer types and traversals with (default: the process-wide one).
    """
    rules = Rules(overrides, plugins)
    ruled = rules.leaves(model)
    typed = {name: (m, rule) for name, (m, rule) in ruled.items() if isinstance(rule, LayerType)}
    tracer = ChannelTracer(typed)
    handles = [
        h
        for m, _ in typed.values()
        for h in (m.register_forward_pre_hook(tracer.pre_hook), m.register_forward_hook(tracer.hook))
    ]
    try:
        recording = record(model, example_input, {name: m for name, (m, _) in ruled.items()}, mode=tracer.start)
    finally:
        for h in handles:
            h.remove()
    tracer.pin_output(recording.output)
    traversal = traversal or traversal_of(model, rules.manager)
    protect = set(protected) | set(traversal.protected)
    modules = dict(model.named_modules())
    for name in sorted(protect):
        if name not in modules:
            raise PruneError(f"protected layer {name!r} is not in the model; {suggest(name, typed)}")
        for (layer, role, _), atoms in tracer.members.items():
            if role == "out" and (layer == name or layer.startswith(name + ".")):
                tracer.atoms.pin(atoms, "is protected")
    calls: dict[str, list[Call]] = defaultdict(list)
    for call in recording.calls:
        calls[call.name].append(call)
    nodes = {name: LayerNode(name, m, rule, calls[name]) for name, (m, rule) in ruled.items() if calls[name]}
    graph = ChannelGraph(
        _groups(tracer.atoms, tracer.members),
        nodes,
        sum(p.numel() for p in model.parameters()),
        traversal,
        fallback=recording.fallback,
        example=example_input,
        output_sizes=tensor_sizes(recording.output),
    )
    graph.warnings = _warn_unknown(tracer)
    return graph


def _groups(atoms: Atoms, members: dict[tuple[str, str, int | None], tuple[int, ...]]) -> list[Group]:
    # channels = classes of atoms; groups = classes joined by belonging to one producer's space
    roots = [atoms.find(a) for a in range(len(atoms.parent))]
    joined = Atoms()
    joined.new_space("", len(roots))
    for space in atoms.spaces:
        for a in range(space.first + 1, space.first + space.size):
            joined.union(roots[space.first], roots[a])
    by_group: dict[int, list[int]] = defaultdict(list)
    for root in sorted(set(roots)):
        by_group[joined.find(root)].append(root)
    groups, where = [], {}
    for gid, (_, classes) in enumerate(sorted(by_group.items())):
        pinned = {}
        for ch, root in enumerate(classes):
            where[root] = (gid, ch)
            reasons = atoms.reasons.get(root)
            if reasons:
                pinned[ch] = tuple(sorted(reasons))
        groups.append(Group(gid, len(classes), [], pinned))
    for (layer, role, call), layer_atoms in sorted(members.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        split: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        for local, atom in enumerate(layer_atoms):
            gid, ch = where[roots[atom]]
            split[gid][0].append(local)
            split[gid][1].append(ch)
        for gid, (locals_, chans) in split.items():
            groups[gid].members.append(Member(layer, role, tuple(locals_), tuple(chans), call))
    groups = [g for g in groups if g.members]
    for gid, group in enumerate(groups):
        group.id = gid
    return groups


def _warn_unknown(tracer: ChannelTracer) -> list[str]:
    messages = list(tracer.faults.values())
    for op, op_atoms in tracer.unknown.items():
        layers = sorted({tracer.atoms.space(a).name for a in op_atoms} - {"<input>"})
        if layers:
            messages.append(f"{op} touches the channels of {', '.join(layers)}; they are left unprunable")
    for message in messages:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return messages
