"""A run: config, the pruning loop with its doors, checkpoints, export and reports.

The public names are the ones listed here — what a config builds (its model, its trainer), the
run, what it hands your loop, and the weights and exports it writes; the modules behind them may
move.
"""

from .components import build_model, build_trainer
from .pruned_step import PrunedStep
from .pruner import Pruner
from .state import Result
from .storage.export import export, load
from .storage.onnx_export import export_onnx
from .storage.weights import load_into, load_weights, save_weights

__all__ = [
    "PrunedStep",
    "Pruner",
    "Result",
    "build_model",
    "build_trainer",
    "export",
    "export_onnx",
    "load",
    "load_into",
    "load_weights",
    "save_weights",
]
