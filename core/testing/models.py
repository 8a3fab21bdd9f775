"""Checking that a model prunes exactly: the pruned model against the zeroed one."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..cost import CostModel, count
from ..graph import ChannelGraph, sample, trace
from ..plugin.manager import Manager
from ..pruning import remove
from .contract import close_enough, require


def check_model(
    model: nn.Module,
    example_input: Any,
    fraction: float = 0.25,
    seed: int = 0,
    plugins: Manager | None = None,
    rtol: float = 1e-4,
) -> dict[int, set[int]]:
    """Trace ``model``, remove a random ``fraction`` of every prunable group (in units its grouped
    layers allow), and compare the pruned
    model with the unpruned one whose removed channels are zeroed at the output of every layer
    that carries them; the cost model's prediction must equal a recount. Returns the removal."""
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
    for i, (a, b) in enumerate(zip(got, reference)):
        close_enough(a, b, f"output {i} of the pruned model against the zeroed one", rtol=rtol, atol=rtol)
    recount = count(model, example_input, plugins=plugins)
    require(
        (predicted.macs, predicted.params) == (recount.macs, recount.params),
        f"the cost model predicted {predicted.macs} MACs and {predicted.params} params, a recount finds "
        f"{recount.macs} and {recount.params}",
    )
    return removal


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
