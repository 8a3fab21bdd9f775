"""The calibration pass: feed batches through the model and let criteria observe activations
(and gradients) of every scored layer, as streaming statistics."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import ConfigError
from .graph import ChannelGraph
from .recording import eval_mode
from .runtime import to_device
from .scoring import scored_layers


def needs(criteria: Mapping[str, Any]) -> set[str]:
    return set().union(*(set(c.needs) for c in criteria.values())) if criteria else set()


def calibrate(
    model: nn.Module,
    graph: ChannelGraph,
    criteria: Mapping[str, Any],
    batches: Iterable[dict],
    loss: Callable[[torch.Tensor, dict], torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> int:
    """Run ``batches`` through ``model`` (eval mode) so every criterion observes the raw output of
    each producer with prunable channels; returns the number of samples seen."""
    for criterion in criteria.values():
        criterion.reset()
    wanted = needs(criteria)
    if not wanted & {"activations", "gradients"}:
        return 0
    with_grad = "gradients" in wanted
    if with_grad and loss is None:
        raise ConfigError("a gradient criterion (taylor) needs a task loss for the calibration pass")
    modules = dict(model.named_modules())
    layers = [l for l in scored_layers(graph) if l.role in ("out", "dw")]
    handles = [modules[l.name].register_forward_hook(_observer(l.name, graph.layers[l.name].rule.out_dim, criteria))
               for l in layers]
    seen = 0
    try:
        with eval_mode(model):
            for batch in tqdm(batches, desc="calibrate", leave=False, disable=not progress):
                image = batch["image"].to(device)
                with torch.set_grad_enabled(with_grad):
                    logits = model(image)
                    if with_grad:
                        loss(logits, to_device(batch, device)).backward()
                seen += image.shape[0]
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    return seen


def _observer(name: str, out_dim: int, criteria: Mapping[str, Any]) -> Callable:
    activation_only = [c for c in criteria.values() if "activations" in c.needs and "gradients" not in c.needs]
    gradient = [c for c in criteria.values() if "gradients" in c.needs]

    def channels_first(t: torch.Tensor) -> torch.Tensor:
        return t if out_dim % t.dim() == 1 else t.movedim(out_dim, 1)

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        act = channels_first(output).detach()
        for criterion in activation_only:
            criterion.observe(name, act, None)
        if gradient and output.requires_grad:
            def on_grad(grad: torch.Tensor) -> None:
                for criterion in gradient:
                    criterion.observe(name, act, channels_first(grad))

            output.register_hook(on_grad)

    return hook
