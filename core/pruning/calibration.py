"""The calibration pass: feed batches through the model and let criteria observe activations
(and gradients) of every scored layer, as streaming statistics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, TrainingError
from ..failures import failing_as, numbered
from ..graph.channel_graph import ChannelGraph, Group, Member
from ..modes import eval_mode
from ..progress import bar
from ..records import to_device
from .scoring import scored_layers


def needs(criteria: Mapping[str, Any]) -> set[str]:
    return set().union(*(set(c.needs) for c in criteria.values())) if criteria else set()


TAPS = ("output", "activation")


def calibrate(
    model: nn.Module,
    graph: ChannelGraph,
    criteria: Mapping[str, Any],
    batches: Iterable[dict],
    loss: Callable[[torch.Tensor, dict], torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    tap: str = "output",
) -> int:
    """Run ``batches`` through ``model`` (eval mode) so every criterion observes each producer with
    prunable channels — its raw output, or with ``tap="activation"`` the output of the activation
    that follows it (see :func:`tapped`); returns the number of samples seen."""
    for criterion in criteria.values():
        criterion.reset()
    wanted = needs(criteria)
    if not wanted & {"activations", "gradients"}:
        return 0
    with_grad = "gradients" in wanted
    if with_grad and loss is None:
        raise ConfigError("a criterion that needs gradients needs a task loss for the calibration pass")
    backward_of = loss if with_grad else None
    modules = dict(model.named_modules())
    handles = [
        # the output's channel dim: an activation between channels-last linear layers holds them last
        modules[at].register_forward_hook(_observer(name, graph.layers[at].dims(0)[1], criteria))
        for name, at in tapped(graph, tap).items()
    ]
    seen = 0
    try:
        with eval_mode(model):
            for index, batch in numbered(bar(batches, "calibrate", progress), "calibrate"):
                image = batch["image"].to(device).requires_grad_(with_grad)  # gradients even if frozen
                with torch.set_grad_enabled(with_grad), failing_as(f"calibrate, batch {index}"):
                    logits = model(image)
                    if backward_of is not None:
                        _finite(backward_of(logits, to_device(batch, device)), index).backward()
                seen += image.shape[0]
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    if not seen:
        raise ConfigError("the calibration data held no batch: criteria observing activations cannot rank on nothing")
    return seen


def _finite(loss: Any, index: int) -> Any:
    """The calibration loss, refused where it is no finite number: its gradients would rank channels by NaN."""
    if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
        raise TrainingError(
            f"calibrate, batch {index}: the loss is {loss.detach().sum().item()}; gradient criteria (taylor) rank by "
            "its gradients — check the loss function and the batch, or rank by a criterion without gradients"
        )
    return loss


def tapped(graph: ChannelGraph, tap: str) -> dict[str, str]:
    """Producer -> the layer whose output stands for its channels in the calibration pass.

    ``output`` is the producer itself (IPAD's choice). ``activation`` is the one activation module,
    called once per forward, carrying exactly the producer's channels (conv → norm → activation):
    in a normalised network the raw output's scale is undone by the norm, so statistics of what
    the consumers see say more. Producers without such a module keep their raw output.
    """
    if tap not in TAPS:
        raise ConfigError(f"pruning.activations_at: {tap!r} is not allowed; valid: {', '.join(TAPS)}")
    out = {}
    for layer in scored_layers(graph):
        if layer.role not in ("out", "dw"):
            continue
        out[layer.name] = layer.name
        found = graph.members_of(layer.name, (layer.role,))
        if tap == "activation" and len(found) == 1:
            out[layer.name] = _activation_after(graph, *found[0]) or layer.name
    return out


def _activation_after(graph: ChannelGraph, group: Group, producer: Member) -> str | None:
    chain = [
        m.layer
        for m in group.members
        if m.role == "pass"
        and (m.local, m.channel) == (producer.local, producer.channel)
        and graph.layers[m.layer].rule.kind == "activation"
        and len(graph.layers[m.layer].calls) == 1
    ]
    return chain[0] if len(chain) == 1 else None


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
