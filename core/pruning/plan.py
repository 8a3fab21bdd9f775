"""The record of a pruning: which channels every layer kept, relative to the original model.

A plan is enough to rebuild the pruned architecture from the original builder: apply it to a
freshly built model and load the weights. It serialises to JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import PruneError, suggest
from ..plugin_manager import Manager, manager

ROLES = ("in", "out")


@dataclass
class Plan:
    """``keep[layer][role]``: the original indices of the channels kept (role ``in`` or ``out``);
    ``sizes[layer][role]``: the original channel counts, to check a model matches."""

    keep: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)

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


def current_size(module: nn.Module, role: str) -> int | None:
    """A layer's channel count in ``role`` from the usual attributes (``None`` if it has none)."""
    names = (
        ("in_channels", "in_features", "num_features")
        if role == "in"
        else ("out_channels", "out_features", "num_features")
    )
    return next((int(getattr(module, n)) for n in names if hasattr(module, n)), None)


def apply_plan(model: nn.Module, plan: Plan, plugins: Manager | None = None) -> nn.Module:
    """Cut a freshly built ``model`` (same builder and arguments as the original) as ``plan`` says,
    with the layer types of ``plugins`` (default: the process-wide plugin manager)."""
    modules = dict(model.named_modules())
    layer_types = plugins or manager()
    work = []
    for layer, roles in plan.keep.items():
        if layer not in modules:
            raise PruneError(f"plan names layer {layer!r}, which the model lacks; {suggest(layer, modules)}")
        module = modules[layer]
        rule = layer_types.layer_type(type(module))
        if rule is None:
            raise PruneError(f"plan cuts layer {layer!r} ({type(module).__name__}), which has no layer type")
        for role, kept in roles.items():
            expected = plan.sizes[layer][role]
            actual = current_size(module, role)
            if actual is not None and actual != expected:
                raise PruneError(
                    f"plan expects layer {layer!r} to have {expected} {role} channels, the model has {actual}"
                )
            if not kept or max(kept) >= expected or min(kept) < 0:
                raise PruneError(f"plan keeps invalid {role} channels of layer {layer!r}")
            work.append((rule, module, role, torch.tensor(sorted(kept), dtype=torch.long)))
    for rule, module, role, keep in work:
        (rule.prune_in if role == "in" else rule.prune_out)(module, keep)
    return model
