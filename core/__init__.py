"""prunekit: iterative structured filter pruning under a MACs or parameter budget.

The public API::

    import prunekit as pk
    report = pk.count(model, example_input)          # CostReport
    graph = pk.trace(model, example_input)           # ChannelGraph: coupled channel groups
    plan = pk.prune(model, example_input, {"inc.conv1": [0, 5]})  # physical, in place
    pk.get("model", "unet", n_classes=4)             # a plugin object by name
"""
from __future__ import annotations

from .cost import CostReport, count
from .graph import ChannelGraph, Group, Member, trace
from .plan import Plan, apply_plan
from .surgery import prune
from .errors import ConfigError, DataError, PluginError, PruneError, PrunekitError
from .hookspecs import hookimpl
from .plugin_manager import configure as configure_plugins, get, manager, registered
from .types import DataSplits, Flow, LayerShape, LayerType, Outputs, Spec, Traversal, cut_parameter, numel

__version__ = "0.1.0"

__all__ = [
    "ChannelGraph", "ConfigError", "CostReport", "DataError", "DataSplits", "Outputs", "Flow", "Group", "Member", "Plan", "apply_plan",
    "prune", "trace", "LayerShape", "LayerType", "PluginError", "PruneError",
    "PrunekitError", "Spec", "Traversal", "configure_plugins", "count", "cut_parameter", "get", "hookimpl",
    "manager", "numel", "registered",
]
