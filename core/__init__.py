"""prunekit: iterative structured filter pruning under a MACs or parameter budget.

The public API::

    import prunekit as pk
    report = pk.count(model, example_input)          # CostReport
    graph = pk.trace(model, example_input)           # ChannelGraph: coupled channel groups
    plan = pk.prune(model, example_input, {"inc.conv1": [0, 5]})  # physical, in place
    run = pk.Pruner.from_config("cfg.yaml").run()    # the whole IPAD loop
    model = pk.load("runs/x")                        # rebuild + weights
    pk.get("model", "unet", n_classes=4)             # a plugin object by name

The package is layered like the pipeline: ``graph`` (tracing, the channel graph) → ``cost``
(counting, the cost model, latency) → ``pruning`` (plan, surgery, calibration, scoring,
selection) → ``training`` (trainer, data, processes) → ``run`` (the loop, config, checkpoints,
export, report). Each layer imports only the ones before it and the records at the top level.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .cost.counting import CostReport, count
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    PluginError,
    PruneError,
    PrunekitError,
    StorageError,
    TrainingError,
)
from .graph.channel_graph import ChannelGraph, Group, Member, trace
from .hookspecs import HOOK_VERSION, hookimpl
from .layer_type import Flow, LayerShape, LayerType, cut_parameter, numel
from .plugin_manager import Manager, get, manager, registered
from .pruning.plan import Plan, apply_plan
from .pruning.surgery import prune
from .records import DataSplits, Outputs, ScoredLayer, Spec, Traversal
from .run import config
from .run.export import load
from .run.pruner import Pruner

try:
    __version__ = version("prunekit")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "HOOK_VERSION",
    "ChannelGraph",
    "CheckpointError",
    "ConfigError",
    "CostReport",
    "DataError",
    "DataSplits",
    "Flow",
    "Group",
    "LayerShape",
    "LayerType",
    "Manager",
    "Member",
    "Outputs",
    "Plan",
    "PluginError",
    "PruneError",
    "PrunekitError",
    "Pruner",
    "ScoredLayer",
    "Spec",
    "StorageError",
    "TrainingError",
    "Traversal",
    "apply_plan",
    "config",
    "count",
    "cut_parameter",
    "get",
    "hookimpl",
    "load",
    "manager",
    "numel",
    "prune",
    "registered",
    "trace",
]
