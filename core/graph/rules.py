"""Which rule counts and cuts a module: its layer-type plugin, priced by the user's cost functions
where they name it.

Both the tracer (how channels flow through a layer) and the cost accounting (what a layer costs)
ask the same question, so the answer lives below both. A cost function never changes how a layer
is cut: the tracer and the surgery see the layer type only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from ..errors import PruneError
from ..layer_type import LayerShape, LayerType
from ..seam import LayerTypes
from .overrides import CostFunctions, LayerCostFunctions, Overrides, ResolvedCostFunctions
from .recording import Call, leaves


@dataclass(frozen=True)
class WithCostFunctions:
    """A layer some cost function prices: counted by the function, cut as its layer type says.
    Without a layer type (``layer_type`` None) it is a custom layer: counted whole, never cut."""

    layer: str
    layer_type: LayerType | None
    prices: LayerCostFunctions

    @property
    def name(self) -> str:
        return self.layer_type.name if self.layer_type else "custom"

    @property
    def kind(self) -> str:
        return self.layer_type.kind if self.layer_type else "custom"

    @property
    def in_dim(self) -> int:
        return self.layer_type.in_dim if self.layer_type else 1

    @property
    def out_dim(self) -> int:
        return self.layer_type.out_dim if self.layer_type else 1

    def macs(self, module: nn.Module, shape: LayerShape) -> float:
        if self.prices.macs is not None:
            return self.prices.macs(self.layer, module, shape)
        return self.layer_type.macs(module, shape) if self.layer_type else 0

    def params(self, module: nn.Module, shape: LayerShape) -> float:
        if self.prices.params is not None:
            return self.prices.params(self.layer, module, shape)
        return self.builtin_params(module, shape)

    def builtin_params(self, module: nn.Module, shape: LayerShape) -> int:
        """The parameters prunekit itself counts: the layer type's, or the module's tensors."""
        if self.layer_type is not None:
            return self.layer_type.params(module, shape)
        return sum(p.numel() for p in module.parameters())


Rule = LayerType | WithCostFunctions


def counted(rule: Rule, include: Iterable[str]) -> bool:
    """Whether the rule's MACs count: a layer a function prices always does."""
    return rule.kind in include or (isinstance(rule, WithCostFunctions) and rule.prices.macs is not None)


def layer_type_of(rule: Rule) -> LayerType | None:
    """The layer type that cuts a layer (``None``: a custom layer, never cut)."""
    return rule.layer_type if isinstance(rule, WithCostFunctions) else rule


def custom(rule: Rule) -> str:
    """What the user's functions price of a layer: ``""``, ``macs``, ``params`` or ``macs, params``."""
    if not isinstance(rule, WithCostFunctions):
        return ""
    return ", ".join(r for r in ("macs", "params") if getattr(rule.prices, r) is not None)


class Rules:
    """Finds the rule of each layer of one model: layer-type plugins (MRO), priced by the user's
    functions where their keys name it."""

    def __init__(
        self,
        overrides: Overrides | CostFunctions | None,
        layer_types: LayerTypes,
        param_overrides: Overrides | None = None,
    ) -> None:
        self.cost_functions = CostFunctions.of(overrides, param_overrides)
        self.layer_types = layer_types
        self.bound: ResolvedCostFunctions | None = None

    def leaves(self, model: nn.Module) -> dict[str, tuple[nn.Module, Rule]]:
        """The outermost modules of ``model`` that have a layer type or a cost function, by name,
        with their rule; the cost functions' keys are resolved against ``model`` here."""
        if not isinstance(model, nn.Module):
            raise PruneError(f"expected a torch.nn.Module to count or trace, got {type(model).__name__}")
        self.bound = self.cost_functions.bind(model) if self.cost_functions else None
        rules: dict[str, Rule] = {}

        def is_leaf(name: str, module: nn.Module) -> bool:
            rule = self.rule(name, module)
            if rule is not None:
                rules[name] = rule
            return rule is not None

        found = leaves(model, is_leaf)
        if self.bound is not None:
            self.bound.check_globs(found)
        return {name: (m, rules[name]) for name, m in found.items()}

    def rule(self, name: str, module: nn.Module) -> Rule | None:
        """The rule of module ``name`` of the model last given to :meth:`leaves`."""
        layer_type = self.layer_types.layer_type(type(module))
        prices = self.bound.prices(name, module, typed=layer_type is not None) if self.bound else LayerCostFunctions()
        if not prices:
            return layer_type
        return WithCostFunctions(name, layer_type, prices)


def shape_of(call: Call, rule: Rule) -> LayerShape:
    """The shape record of one recorded call of a layer."""
    in_channels, out_channels = channels(call.input, rule.in_dim), channels(call.output, rule.out_dim)
    return LayerShape.of(call.module, call.input, call.output, in_channels, out_channels)


def priced_params(model: nn.Module, layers: Iterable[tuple[nn.Module, Rule, LayerShape]]) -> float:
    """The model's parameters, each tensor once, with what the user's functions say in place of
    what prunekit counts for the layers they price."""
    total: float = sum(p.numel() for p in model.parameters())
    for module, rule, shape in layers:
        if isinstance(rule, WithCostFunctions) and rule.prices.params is not None:
            total += rule.params(module, shape) - rule.builtin_params(module, shape)
    return total


def channels(size: tuple[int, ...], dim: int) -> int:
    if not size or not -len(size) <= dim < len(size):
        return 1
    return size[dim]
