"""Physical pruning: removing group channels from every member layer at once."""

from __future__ import annotations

import numbers
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import PruneError
from ..graph.channel_graph import ChannelGraph, trace
from ..graph.constraints import violation
from ..graph.recording import ForwardError, record, tensor_sizes
from ..seam import Factories
from .deviation import outputs, relative_change
from .plan import Plan, cut_tensor


def channel_indices(layer: str, indices: Any) -> list[int]:
    """A request's channel indices as ints: Python or NumPy integers, or an integer tensor — never
    bools or floats, which would silently pick other channels."""
    if torch.is_tensor(indices):
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise PruneError(f"channels of layer {layer!r}: a {indices.dtype} tensor is not a tensor of indices")
        return [int(i) for i in indices.flatten().tolist()]
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Iterable):
        raise PruneError(f"channels of layer {layer!r}: {indices!r} is not a list of channel indices")
    return [_index(layer, i) for i in indices]


def _index(layer: str, index: Any) -> int:
    if torch.is_tensor(index) and index.numel() == 1 and not (index.is_floating_point() or index.dtype == torch.bool):
        return int(index.item())
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, numbers.Integral):
        raise PruneError(f"channel {index!r} of layer {layer!r} is a {type(index).__name__}, not an integer index")
    return int(index)


def removal_for(graph: ChannelGraph, request: Mapping[str, Iterable[int]]) -> dict[int, set[int]]:
    """Translate ``{layer: [output-channel indices]}`` into ``{group id: {group channels}}``."""
    if not isinstance(request, Mapping):
        raise PruneError(
            f"a pruning request maps layer names to channel indices, e.g. {{'conv1': [0, 3]}}; "
            f"got {type(request).__name__}"
        )
    removal: dict[int, set[int]] = defaultdict(set)
    for layer, indices in request.items():
        channels = graph.output_channels(str(layer))
        if not channels:
            raise PruneError(f"layer {layer!r} has no output channels that can be pruned")
        size = max(channels) + 1
        for index in channel_indices(layer, indices):
            if not 0 <= index < size:
                raise PruneError(f"channel {index!r} of layer {layer!r} is out of range 0..{size - 1}")
            if index not in channels:
                raise PruneError(f"channel {index} of layer {layer!r} is not traced to any group")
            group, ch = channels[index]
            removal[group.id].add(ch)
    return dict(removal)


def _check(graph: ChannelGraph, removal: Mapping[int, set[int]]) -> None:
    for gid, chans in removal.items():
        group = graph.groups[gid]
        layers = ", ".join(group.producers) or "this group"
        for ch in sorted(chans):
            if ch in group.pinned:
                reasons = "; they ".join(group.pinned[ch])
                raise PruneError(f"channel {ch} of {layers} cannot be removed: these channels {reasons}")
        if not group.prunable:
            raise PruneError(f"the channels of {layers} cannot be pruned: no layer produces them")
        if len(set(chans)) >= group.channels:
            raise PruneError(f"removing every channel of {layers} would disconnect the model")
        broken = violation(group, chans)
        if broken:
            raise PruneError(f"channels {sorted(chans)} of {layers} cannot be removed together: {broken}")


def kept_channels(graph: ChannelGraph, removal: Mapping[int, Iterable[int]]) -> dict[tuple[str, str], list[int]]:
    """For every layer side that changes, the local channels it keeps (``in`` or ``out``; ``tensor``
    for a parameter or buffer outside layers)."""
    dropped: dict[tuple[str, str], set[int]] = defaultdict(set)
    for gid, channels in removal.items():
        gone = set(channels)
        for member in graph.groups[gid].members:
            if member.role == "pass":
                continue
            role = member.role if member.role in ("in", "tensor") else "out"
            dropped[(member.layer, role)].update(i for i, c in zip(member.local, member.channel) if c in gone)
    keep = {}
    for (layer, role), gone in dropped.items():
        if not gone:
            continue
        kept = [i for i in range(_size(graph, layer, role)) if i not in gone]
        if not kept:
            raise PruneError(f"removing these channels would leave layer {layer!r} without {role}put channels")
        keep[(layer, role)] = kept
    return keep


def _outputs_first(item: tuple[tuple[str, str], list[int]]) -> bool:
    """A grouped conv's inputs are cut after its outputs: with one input left per group it looks
    depthwise, and its outputs must be cut as a grouped conv's."""
    return item[0][1] == "in"


def _size(graph: ChannelGraph, layer: str, role: str) -> int:
    return graph.tensors[layer] if role == "tensor" else graph.layers[layer].channels(role)


def remove(model: nn.Module, graph: ChannelGraph, removal: Mapping[int, Iterable[int]]) -> Plan:
    """Remove ``{group id: channels}`` from ``model`` (traced as ``graph``), physically, in place.

    Everything is checked before the first tensor is cut, and a shape-only forward after the cut
    proves the model still runs; a PruneError leaves the model bit-identical.
    """
    sets = {gid: set(chans) for gid, chans in removal.items() if chans}
    for gid in sets:
        if not 0 <= gid < len(graph.groups):
            raise PruneError(f"no group {gid}; the graph has {len(graph.groups)}")
    _check(graph, sets)
    keep = kept_channels(graph, sets)
    plan = Plan()
    for (layer, role), kept in keep.items():
        plan.keep.setdefault(layer, {})[role] = kept
        plan.sizes.setdefault(layer, {})[role] = _size(graph, layer, role)
    before = outputs(model, graph.example) if graph.approximated else None
    owners = [
        model.get_submodule(layer.rpartition(".")[0]) if role == "tensor" else graph.layers[layer].module
        for layer, role in keep
    ]
    saved = [Snapshot.of(module) for module in {id(m): m for m in owners}.values()]
    try:
        for (layer, role), kept in sorted(keep.items(), key=_outputs_first):
            index = torch.tensor(kept, dtype=torch.long)
            if role == "tensor":
                cut_tensor(model, layer, index)
            else:
                node = graph.layers[layer]
                (node.layer_type.prune_in if role == "in" else node.layer_type.prune_out)(node.module, index)
        _still_runs(model, graph, {graph.layers[layer].layer_type.name for layer, role in keep if role != "tensor"})
    except BaseException:
        for snapshot in saved:
            snapshot.restore()
        raise
    if before is not None:
        plan.deviation = relative_change(before, outputs(model, graph.example))
    return plan


@dataclass
class Snapshot:
    """A module's attributes and tensor contents, to undo a cut bit for bit — whatever the layer
    type did: replaced parameters, reassigned ``.data``, or values changed in place."""

    module: nn.Module
    attributes: dict[str, Any]
    tensors: list[tuple[torch.Tensor, torch.Tensor]]

    @classmethod
    def of(cls, module: nn.Module) -> Snapshot:
        attributes = {k: dict(v) if isinstance(v, dict) else v for k, v in vars(module).items()}
        own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        return cls(module, attributes, [(t, t.detach().clone()) for t in own])

    def restore(self) -> None:
        vars(self.module).clear()
        vars(self.module).update(self.attributes)
        with torch.no_grad():
            for tensor, value in self.tensors:
                tensor.data = value


def _still_runs(model: nn.Module, graph: ChannelGraph, cut_by: set[str]) -> None:
    """A shape-only forward on the graph's example input; the outputs keep their sizes."""
    if graph.example is None:
        return
    try:
        recording = record(model, graph.example, {name: node.module for name, node in graph.layers.items()})
    except ForwardError as exc:
        at = f" at layer {exc.layer!r} ({type(graph.layers[exc.layer].module).__name__})" if exc.layer else ""
        raise PruneError(
            f"after the cut the model no longer runs{at}: {exc}; it is restored unchanged. A layer type cut here "
            f"({', '.join(sorted(cut_by))}) declares the wrong flow or channel dims, or cuts the wrong tensor"
        ) from None
    if tensor_sizes(recording.output) != graph.output_sizes:
        raise PruneError(
            f"after the cut the model's outputs are {tensor_sizes(recording.output)}, not "
            f"{graph.output_sizes}; it is restored unchanged (layer types cut: {', '.join(sorted(cut_by))})"
        )


def prune(
    model: nn.Module,
    example_input: Any,
    request: Mapping[str, Iterable[int]],
    protected: Iterable[str] = (),
    plugins: Factories | None = None,
    approximate: Iterable[str] = (),
) -> Plan:
    """Remove output channels ``{layer name: [indices]}`` physically, in place.

    Naming any member of a coupled group prunes the whole group (the producers it is added to,
    the norms that follow, every consumer's matching inputs at their offsets in each ``cat``).
    Raises :class:`PruneError`, leaving the model untouched, for unknown or protected layers,
    out-of-range indices, a removal that would leave a layer without channels, or one a grouped
    layer cannot take (a grouped convolution loses as many channels from each of its groups;
    GroupNorm loses whole groups) — the request is refused, never rounded. ``approximate`` allows
    approximate cuts (``["layer_norm"]``); the plan's ``deviation`` then says how much the cut
    changed the output on ``example_input``.
    """
    graph = trace(model, example_input, protected=protected, plugins=plugins, approximate=approximate)
    return remove(model, graph, removal_for(graph, request))
