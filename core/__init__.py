"""prunekit: iterative structured filter pruning under a MACs or parameter budget.

The public API::

    import prunekit as pk
    report = pk.count(model, example_input)          # CostReport
    graph = pk.trace(model, example_input)           # ChannelGraph: coupled channel groups
    plan = pk.prune(model, example_input, {"inc.conv1": [0, 5]})  # physical, in place
    run = pk.Pruner.from_config("cfg.yaml").run()    # the whole IPAD loop
    model = pk.load("runs/x")                        # rebuild + weights
    pk.get("model", "unet", n_classes=4)             # a plugin object by name
"""
from __future__ import annotations

from .cost import CostReport, count
from .graph import ChannelGraph, Group, Member, trace
from .plan import Plan, apply_plan
from .scoring import ScoredLayer
from .surgery import prune
from . import config
from .export import load
from .pruner import Pruner
from .errors import CheckpointError, ConfigError, DataError, PluginError, PruneError, PrunekitError
from .hookspecs import hookimpl
from .plugin_manager import configure as configure_plugins, get, manager, registered
from .types import DataSplits, Flow, LayerShape, LayerType, Outputs, Spec, Traversal, cut_parameter, numel

__version__ = "0.1.0"

__all__ = [
    "ChannelGraph", "CheckpointError", "ConfigError", "CostReport", "DataError", "DataSplits", "Outputs", "ScoredLayer", "Flow", "Group", "Member", "Plan", "apply_plan",
    "prune", "trace", "LayerShape", "LayerType", "PluginError", "PruneError",
    "PrunekitError", "Spec", "Traversal", "configure_plugins", "count", "cut_parameter", "get", "hookimpl",
    "Pruner", "config", "load", "manager", "numel", "registered",
]
