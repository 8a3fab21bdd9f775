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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import PruneError, suggest
from ..layer_type import LayerType
from ..records import Traversal
from ..seam import Factories, LayerTypes, resolve
from .atoms import Atoms, Constraint
from .constraints import GroupConstraint, settle
from .overrides import CostFunctions, Overrides
from .recording import Call, record, tensor_sizes
from .rules import Rule, Rules, channels, layer_type_of, priced_params, shape_of
from .tracer import OUTPUT, ChannelTracer
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
    """Channels removed together; ``pinned`` says why some stay (each reason a predicate of
    "these channels"), ``constraints`` how grouped layers let the rest go (see
    :mod:`prunekit.graph.constraints`), ``cells`` the blocks they go in."""

    id: int
    channels: int
    members: list[Member]
    pinned: dict[int, tuple[str, ...]] = field(default_factory=dict)
    constraints: list[GroupConstraint] = field(default_factory=list)
    cells: tuple[tuple[tuple[int, ...], ...], ...] = ()

    def __post_init__(self) -> None:
        if not self.cells:  # unconstrained: one cell, channel by channel
            self.cells = (tuple((c,) for c in range(self.channels)),)

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
    #: call -> the dim that held the channels, where an element-wise layer saw them elsewhere than
    #: its layer type's dims (an activation between channels-last linear layers)
    channel_dims: dict[int, int] = field(default_factory=dict)

    @property
    def layer_type(self) -> LayerType:
        """The layer type that cuts this layer (a custom layer, which only a cost function
        prices, is never cut)."""
        found = layer_type_of(self.rule)
        if found is None:
            raise PruneError(f"layer {self.name!r} has no layer type, only a cost function: it cannot be cut")
        return found

    def dims(self, call: int) -> tuple[int, int]:
        """(input, output) channel dims of call number ``call``."""
        if call in self.channel_dims:
            return self.channel_dims[call], self.channel_dims[call]
        return self.rule.in_dim, self.rule.out_dim

    def channels(self, role: str) -> int:
        call = self.calls[0]
        if role == "in":
            return channels(call.input, self.rule.in_dim)
        return channels(call.output, self.rule.out_dim)


@dataclass
class ChannelGraph:
    """What :func:`trace` finds: the ``groups`` of channels removed together (each with its members
    in every layer it touches), every ``layers`` node with the shapes its calls saw, and the
    traversal's blocks and protected layers."""

    groups: list[Group]
    layers: dict[str, LayerNode]
    params: float  # in the user's units where cost functions price parameters
    traversal: Traversal = field(default_factory=lambda: Traversal("default"))
    warnings: list[str] = field(default_factory=list)
    fallback: str | None = None
    #: the example input the graph was traced on, and the sizes of the model's outputs there
    example: Any = None
    output_sizes: list[tuple[int, ...]] = field(default_factory=list)
    #: layers cut although no cut is exact (``trace(approximate=...)``): name -> approximation
    approximated: dict[str, str] = field(default_factory=dict)
    #: parameters and buffers outside layers cut with their channels (layer scales): name -> channels
    tensors: dict[str, int] = field(default_factory=dict)

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
    overrides: Overrides | CostFunctions | None = None,
    traversal: Traversal | None = None,
    plugins: Factories | None = None,
    approximate: Iterable[str] = (),
    param_overrides: Overrides | None = None,
) -> ChannelGraph:
    """Trace ``model`` on ``example_input`` into a :class:`ChannelGraph`.

    ``protected`` layers (and the traversal's) keep all their output channels; layers whose
    channels reach the model output are protected anyway. ``plugins`` resolves layer types and
    traversals (default: the process-wide plugin manager; a run passes its own). ``approximate``
    names approximations allowed (``layer_norm``): layers no cut is exact for are cut anyway.
    ``overrides`` / ``param_overrides`` are cost functions as in :func:`prunekit.count`: they
    price layers and never change the groups; a module only they name (no layer type) is a
    custom layer, counted and never cut.
    """
    plugins = resolve(plugins)
    rules = Rules(overrides, plugins, param_overrides)
    ruled = rules.leaves(model)
    typed = {name: (m, found) for name, (m, rule) in ruled.items() if (found := layer_type_of(rule)) is not None}
    _warn_custom(ruled, typed)
    tracer = ChannelTracer(typed, _allowed(approximate, plugins))
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
    traversal = traversal or traversal_of(model, plugins)
    protect = set(protected) | set(traversal.protected)
    modules = dict(model.named_modules())
    for name in sorted(protect):
        if name not in modules:
            raise PruneError(f"protected layer {name!r} is not in the model; {suggest(name, typed)}")
        for (layer, role, _), atoms in tracer.members.items():
            if role == "out" and (layer == name or layer.startswith(name + ".")):
                tracer.atoms.pin(atoms, f"are protected ({name})")
    calls: dict[str, list[Call]] = defaultdict(list)
    for call in recording.calls:
        calls[call.name].append(call)
    dims: dict[str, dict[int, int]] = defaultdict(dict)
    for (layer, index), dim in tracer.channel_dims.items():
        dims[layer][index] = dim
    nodes = {
        name: LayerNode(name, m, rule, calls[name], dims.get(name, {}))
        for name, (m, rule) in ruled.items()
        if calls[name]
    }
    groups = _groups(tracer.atoms, tracer.members, tracer.constraints)
    return ChannelGraph(
        groups,
        nodes,
        priced_params(model, ((n.module, n.rule, shape_of(n.calls[0], n.rule)) for n in nodes.values())),
        traversal,
        warnings=_warn(tracer, groups),
        fallback=recording.fallback,
        example=example_input,
        output_sizes=tensor_sizes(recording.output),
        approximated=dict(tracer.approximated),
        tensors={layer: len(atoms) for (layer, role, _), atoms in tracer.members.items() if role == "tensor"},
    )


def _warn_custom(ruled: dict[str, tuple[nn.Module, Rule]], typed: dict[str, Any]) -> None:
    custom = sorted(f"{name} ({type(m).__name__})" for name, (m, _) in ruled.items() if name not in typed)
    if custom:
        warnings.warn(
            f"layers {', '.join(custom)} have a cost function but no layer type: they are counted, never cut, "
            "and the channels they read or write stay",
            RuntimeWarning,
            stacklevel=3,
        )


def _allowed(names: Iterable[str], plugins: LayerTypes) -> frozenset[str]:
    names = [names] if isinstance(names, str) else list(names)
    known = plugins.approximations()
    for name in names:
        if name not in known:
            raise PruneError(f"unknown approximation {name!r}; {suggest(str(name), known)}")
    return frozenset(names)


def _groups(
    atoms: Atoms, members: dict[tuple[str, str, int | None], tuple[int, ...]], constraints: list[Constraint]
) -> list[Group]:
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
    _constrain(groups, constraints, lambda atom: where[roots[atom]])
    groups = [g for g in groups if g.members]
    for gid, group in enumerate(groups):
        group.id = gid
    return groups


def _constrain(groups: list[Group], constraints: list[Constraint], locate: Callable[[int], tuple[int, int]]) -> None:
    """Give each group the constraints on its channels; pin what no valid removal can take."""
    for constraint in constraints:
        located = [[locate(a) for a in segment] for segment in constraint.segments]
        per_group: dict[int, list[tuple[int, ...]]] = defaultdict(list)
        for segment in located:
            for gid in {gid for gid, _ in segment}:
                per_group[gid].append(tuple(sorted({ch for g, ch in segment if g == gid})))
        spans = constraint.kind == "balance" and len(per_group) > 1
        spans |= constraint.kind == "blocks" and any(len({g for g, _ in seg}) > 1 for seg in located)
        if spans:
            reason = f"are split into groups by layer {constraint.layer} across the channels of several producers"
            for gid, ch in (p for seg in located for p in seg):
                _pin(groups[gid], [ch], reason)
            continue
        for gid, segs in per_group.items():
            groups[gid].constraints.append(GroupConstraint(constraint.kind, constraint.layer, tuple(segs)))
    for group in groups:
        _pin_partial_blocks(group)
        refused = settle(group)
        if refused:
            _pin(group, range(group.channels), refused)


def _pin_partial_blocks(group: Group) -> None:
    """A block that must keep some channels keeps them all."""
    for constraint in group.constraints:
        if constraint.kind == "blocks":
            for segment in constraint.segments:
                if any(c in group.pinned for c in segment):
                    reason = f"are normalised together with channels that stay by layer {constraint.layer}"
                    _pin(group, [c for c in segment if c not in group.pinned], reason)


def _pin(group: Group, channels: Iterable[int], reason: str) -> None:
    for ch in channels:
        group.pinned[ch] = tuple(sorted({*group.pinned.get(ch, ()), reason}))


#: reasons every model has; listed in ``graph.warnings`` but not raised as warnings
EXPECTED = (OUTPUT, "are protected", "are the model input")


def _warn(tracer: ChannelTracer, groups: list[Group]) -> list[str]:
    """One line per reason channels stay, naming the producers they belong to."""
    layers: dict[str, set[str]] = defaultdict(set)
    for group in groups:
        producers = [m.layer for m in group.members if m.role in ("out", "dw")]
        for reasons in group.pinned.values():
            for reason in reasons:
                layers[reason].update(producers)
    lines = {
        reason: f"the channels of {', '.join(sorted(found))} {reason}; they stay"
        for reason, found in layers.items()
        if found
    }
    approximate = [
        f"layers {', '.join(sorted(names))} are cut although no cut of theirs is exact (approximation {kind} "
        "allowed): the output changes beyond the removed channels; the plan's deviation says by how much"
        for kind, names in _by_value(tracer.approximated).items()
    ]
    shown = [
        *tracer.faults.values(),
        *approximate,
        *(line for reason, line in sorted(lines.items()) if not reason.startswith(EXPECTED)),
    ]
    for line in shown:
        warnings.warn(line, RuntimeWarning, stacklevel=3)
    return [*tracer.faults.values(), *approximate, *sorted(lines.values())]


def _by_value(mapping: dict[str, str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for key, value in mapping.items():
        found[value].append(key)
    return found
