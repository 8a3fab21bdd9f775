"""The record of a pruning: which channels every layer kept, relative to the original model.

A plan is enough to rebuild the pruned architecture from the original builder: apply it to a
freshly built model and load the weights. It serialises to JSON.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import PruneError, suggest
from ..layer_type import cut_parameter
from ..seam import Factories, resolve

ROLES = ("in", "out", "tensor")  # tensor: a parameter or buffer outside layers, by its name


@dataclass
class Plan:
    """``keep[layer][role]``: the original indices of the channels kept (role ``in`` or ``out``, or
    ``tensor`` where ``layer`` names a parameter or buffer outside layers, such as a layer scale);
    ``sizes[layer][role]``: the original channel counts, to check a model matches."""

    keep: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    #: where approximate cuts were allowed (``approximate=``) and the model has layers they apply
    #: to: how much the cut changed the output on the example input, ‖after − before‖ / ‖before‖
    deviation: float | None = None

    def then(self, later: Plan) -> Plan:
        """This plan followed by ``later`` (whose indices refer to the model this plan produced)."""
        keep = {layer: dict(roles) for layer, roles in self.keep.items()}
        sizes = {layer: dict(roles) for layer, roles in self.sizes.items()}
        for layer, roles in later.keep.items():
            for role, kept in roles.items():
                before = keep.setdefault(layer, {}).get(role)
                keep[layer][role] = [before[i] for i in kept] if before is not None else list(kept)
                sizes.setdefault(layer, {}).setdefault(role, later.sizes[layer][role])
        return Plan(keep, sizes)

    @property
    def removed(self) -> int:
        """Output channels removed, over all layers."""
        return sum(self.sizes[layer]["out"] - len(roles["out"]) for layer, roles in self.keep.items() if "out" in roles)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "prunekit-plan", "version": 1, "keep": self.keep, "sizes": self.sizes}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        if not isinstance(data, dict) or data.get("format") != "prunekit-plan":
            raise PruneError("not a prunekit plan (missing 'format': 'prunekit-plan')")
        try:
            keep = {
                str(layer): {r: [int(i) for i in v] for r, v in roles.items()} for layer, roles in data["keep"].items()
            }
            sizes = {str(layer): {r: int(n) for r, n in roles.items()} for layer, roles in data["sizes"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PruneError(f"malformed plan ({type(exc).__name__}: {exc})") from None
        for layer, roles in keep.items():
            for role in roles:
                if role not in ROLES or role not in sizes.get(layer, {}):
                    raise PruneError(
                        f"malformed plan: layer {layer!r} role {role!r} needs a role in {list(ROLES)} "
                        "with an entry in 'sizes'"
                    )
        return cls(keep, sizes)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise PruneError(f"plan is not valid JSON ({exc})") from None
        except RecursionError:
            raise PruneError("plan is not valid JSON (nested too deeply)") from None


def current_size(module: nn.Module, role: str) -> int | None:
    """A layer's channel count in ``role`` from the usual attributes (``None`` if it has none)."""
    names = (
        ("in_channels", "in_features", "num_features")
        if role == "in"
        else ("out_channels", "out_features", "num_features")
    )
    return next((int(getattr(module, n)) for n in names if hasattr(module, n)), None)


def apply_plan(model: nn.Module, plan: Plan, plugins: Factories | None = None) -> nn.Module:
    """Cut a freshly built ``model`` (same builder and arguments as the original) as ``plan`` says,
    with the layer types of ``plugins`` (default: the process-wide plugin manager)."""
    modules = dict(model.named_modules())
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    layer_types = resolve(plugins)
    work: list[tuple[Callable[[torch.Tensor], None], torch.Tensor]] = []  # every check before the first cut
    for layer, roles in plan.keep.items():
        if "tensor" in roles:
            if layer not in tensors:
                raise PruneError(f"plan names tensor {layer!r}, which the model lacks; {suggest(layer, tensors)}")
            size = max(tensors[layer].shape, default=1)
            keep = _kept(plan, layer, "tensor", size)
            work.append((functools.partial(cut_tensor, model, layer), keep))
            continue
        if layer not in modules:
            raise PruneError(f"plan names layer {layer!r}, which the model lacks; {suggest(layer, modules)}")
        module = modules[layer]
        rule = layer_types.layer_type(type(module))
        if rule is None:
            raise PruneError(f"plan cuts layer {layer!r} ({type(module).__name__}), which has no layer type")
        for role in sorted(roles, key=lambda r: r == "in"):  # outputs first, as surgery cuts them
            keep = _kept(plan, layer, role, current_size(module, role))
            cut = rule.prune_in if role == "in" else rule.prune_out
            work.append((functools.partial(cut, module), keep))
    for cut_with, keep in work:
        cut_with(keep)
    return model


def _kept(plan: Plan, layer: str, role: str, actual: int | None) -> torch.Tensor:
    """The plan's kept channels of ``layer`` in ``role``, checked against the model's ``actual`` size."""
    expected, kept = plan.sizes[layer][role], plan.keep[layer][role]
    what = f"tensor {layer!r}" if role == "tensor" else f"layer {layer!r}"
    if actual is not None and actual != expected:
        raise PruneError(f"plan expects {what} to have {expected} {role} channels, the model has {actual}")
    if not kept or max(kept) >= expected or min(kept) < 0:
        raise PruneError(f"plan keeps invalid {role} channels of {what}")
    return torch.tensor(sorted(kept), dtype=torch.long)


def cut_tensor(model: nn.Module, name: str, keep: torch.Tensor) -> None:
    """Keep entries ``keep`` of parameter or buffer ``name`` along its one dim longer than 1 (a
    layer scale's channels)."""
    path, _, attribute = name.rpartition(".")
    module = model.get_submodule(path)
    tensor = getattr(module, attribute)
    dim = next(d for d, n in enumerate(tensor.shape) if n != 1)
    cut_parameter(module, attribute, keep, dim)
