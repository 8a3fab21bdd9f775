"""prunekit: iterative structured filter pruning under a MACs or parameter budget.

The public API::

    import prunekit as pk
    report = pk.count(model, example_input)          # CostReport
    graph = pk.trace(model, example_input)           # ChannelGraph: coupled channel groups
    plan = pk.prune(model, example_input, {"inc.conv1": [0, 5]})  # physical, in place
    pruned = pk.prune_to(model, example_input, percent=50)   # door 1: one call, a pruned copy
    for step in pk.Pruner(cfg, model=net, val=val).steps(): ...  # door 2: your training loop
    run = pk.Pruner.from_config("cfg.yaml").run()    # door 3: the whole IPAD loop
    model = pk.load("runs/x")                        # rebuild + weights
    pk.export_onnx(model, "model.onnx", example_input)  # checked against PyTorch
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
from .layer_type import Flow, LayerShape, LayerType, cut_parameter, numel
from .plugin.hookspecs import HOOK_VERSION, hookimpl
from .plugin.manager import Manager, get, manager, registered
from .pruning import (
    CriterionConfig,
    LatencyBudget,
    Limits,
    Plan,
    Proposal,
    Pruned,
    PruningStep,
    ResourceBudget,
    apply_plan,
    prune,
    prune_to,
)
from .records import DataSplits, Outputs, ScoredLayer, Spec, Traversal
from .run import config
from .run.config import load_config
from .run.pruned_step import PrunedStep
from .run.pruner import Pruner
from .run.state import Result
from .run.storage.export import load
from .run.storage.onnx_export import export_onnx
from .run_records import StepRecord
from .seam import use_by_default

use_by_default(manager)  # a call without plugins= gets the process-wide manager; a run passes its own

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
    "CriterionConfig",
    "DataError",
    "DataSplits",
    "Flow",
    "Group",
    "LatencyBudget",
    "LayerShape",
    "LayerType",
    "Limits",
    "Manager",
    "Member",
    "Outputs",
    "Plan",
    "PluginError",
    "Proposal",
    "PruneError",
    "Pruned",
    "PrunedStep",
    "PrunekitError",
    "Pruner",
    "PruningStep",
    "ResourceBudget",
    "Result",
    "ScoredLayer",
    "Spec",
    "StepRecord",
    "StorageError",
    "TrainingError",
    "Traversal",
    "apply_plan",
    "config",
    "count",
    "cut_parameter",
    "export_onnx",
    "get",
    "hookimpl",
    "load",
    "load_config",
    "manager",
    "numel",
    "prune",
    "prune_to",
    "registered",
    "trace",
]
