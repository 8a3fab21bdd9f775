"""Checking that a model prunes exactly: the pruned model against the zeroed one."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..cost import CostModel, count
from ..graph import ChannelGraph, sample, trace
from ..plugin.manager import Manager
from ..pruning import remove
from .contract import close_enough, require


@dataclass
class Comparison:
    """What :func:`compare_pruned` found: the removal (group id -> channels), the pruned model's
    outputs beside the zeroed model's, and the cost model's prediction (MACs, params) beside a
    recount of the pruned model."""

    removal: dict[int, set[int]]
    outputs: list[tuple[torch.Tensor, torch.Tensor]]
    predicted: tuple[float, float]
    recount: tuple[float, float]

    @property
    def difference(self) -> float:
        """The largest difference between the pruned and the zeroed outputs, relative to the
        largest zeroed output (random weights through a deep network make outputs of any size)."""
        gaps = [
            float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
            for a, b in self.outputs
            if a.shape == b.shape and a.numel()
        ]
        return max(gaps, default=0.0)


def compare_pruned(
    model: nn.Module, example_input: Any, fraction: float = 0.25, seed: int = 0, plugins: Manager | None = None
) -> Comparison:
    """Trace ``model``, remove a random ``fraction`` of every prunable group (in units its grouped
    layers allow), and run the pruned model beside the unpruned one whose removed channels are
    zeroed at the output of every layer that carries them; ``model`` is left as it was."""
    model = copy.deepcopy(model).eval()
    graph = trace(model, example_input, plugins=plugins)
    rng = random.Random(seed)
    removal = {g.id: chosen for g in graph.groups if (chosen := sample(g, fraction, rng))}
    require(bool(removal), "the model has no prunable channels")
    with torch.no_grad(), _zeroed(model, graph, removal):
        reference = _outputs(model(*_args(example_input)))
    predicted = CostModel(graph).predict(removal)
    remove(model, graph, removal)
    with torch.no_grad():
        got = _outputs(model(*_args(example_input)))
    recount = count(model, example_input, plugins=plugins)
    return Comparison(
        removal, list(zip(got, reference)), (predicted.macs, predicted.params), (recount.macs, recount.params)
    )


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with random weights and BatchNorm statistics (a freshly built model's are too tame
    to show a wrong cut), in double precision and eval mode."""
    gen = torch.Generator().manual_seed(seed)
    model = model.double().eval()
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point():
                value = torch.rand(tensor.shape, generator=gen, dtype=tensor.dtype)
                tensor.copy_(value + 0.5 if name.endswith("running_var") else value * 2 - 1)
    return model


def prunable_share(graph: ChannelGraph) -> float:
    """The share of producer channels that may be removed, leaving out those that reach the model
    output (no pruner removes those)."""
    total = prunable = 0
    for group in graph.groups:
        reasons = {r for rs in group.pinned.values() for r in rs}
        if group.producers and not any("reach the model output" in r for r in reasons):
            total += group.channels
            prunable += len(group.prunable)
    return prunable / max(total, 1)


def check_model(
    model: nn.Module,
    example_input: Any,
    fraction: float = 0.25,
    seed: int = 0,
    plugins: Manager | None = None,
    rtol: float = 1e-4,
) -> dict[int, set[int]]:
    """:func:`compare_pruned`, asserting that the pruned model computes what the zeroed one does
    (within ``rtol``) and that the cost model's prediction equals a recount. Returns the removal."""
    found = compare_pruned(model, example_input, fraction, seed, plugins)
    for i, (a, b) in enumerate(found.outputs):
        close_enough(a, b, f"output {i} of the pruned model against the zeroed one", rtol=rtol, atol=rtol)
    require(
        found.predicted == found.recount,
        f"the cost model predicted {found.predicted[0]} MACs and {found.predicted[1]} params, a recount finds "
        f"{found.recount[0]} and {found.recount[1]}",
    )
    return found.removal


class _zeroed:
    """Forward hooks that zero the removed channels at the output of every layer carrying them."""

    def __init__(self, model: nn.Module, graph: ChannelGraph, removal: dict[int, set[int]]) -> None:
        self.handles: list[Any] = []
        modules = dict(model.named_modules())
        for gid, channels in removal.items():
            for member in graph.groups[gid].members:
                if member.role in ("in", "tensor"):  # a layer scale multiplies channels zeroed before it
                    continue
                local = [i for i, c in zip(member.local, member.channel) if c in channels]
                node = graph.layers[member.layer]
                hook = self._hook(local, node.dims(member.call or 0)[1], member.call)
                self.handles.append(modules[member.layer].register_forward_hook(hook))

    @staticmethod
    def _hook(local: list[int], dim: int, call: int | None) -> Callable[..., Any]:
        calls = [0]

        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor | None:
            now = calls[0]
            calls[0] += 1
            if call is not None and call != now:
                return None
            zeroed = out.clone()
            zeroed.index_fill_(dim % out.dim(), torch.tensor(local, device=out.device), 0)
            return zeroed

        return hook

    def __enter__(self) -> _zeroed:
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()


def _args(example_input: Any) -> tuple:
    return tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)


def _outputs(value: Any) -> list[torch.Tensor]:
    return [t for t in (value if isinstance(value, (tuple, list)) else [value]) if torch.is_tensor(t)]
