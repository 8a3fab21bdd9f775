"""The plugin machinery — the hook contract (``hookspecs``), the manager that loads and checks
plugins, the protocols of the objects they build — and the one surface plugin authors import.

A plugin needs nothing from prunekit but these names::

    from prunekit.plugin import LayerType, Spec, Traversal, field, hookimpl, metric_rows, run_file, suggest
"""

from ..cache import cache_dir
from ..eager import alignment, eager
from ..errors import ConfigError, DataError, PluginError, PruneError, StorageError, suggest
from ..imports import weight_arguments
from ..layer_type import Flow, LayerShape, LayerType, cut_parameter, numel
from ..onnx_graph import onnx_bytes
from ..records import DataSplits, NoArgs, Outputs, ScoredLayer, Spec, Traversal
from ..run_files import atomic_write_text, check_name, open_to_append, run_file
from ..run_records import EpochRecord, RunInfo, StepRecord
from ..schema import field
from ..seam import Runtime
from .hookspecs import HOOK_VERSION, hookimpl
from .protocols import Criterion, DistillationLoss, Logger, Metric, Task
from .rows import metric_rows

__all__ = [
    "HOOK_VERSION",
    "ConfigError",
    "Criterion",
    "DataError",
    "DataSplits",
    "DistillationLoss",
    "EpochRecord",
    "Flow",
    "LayerShape",
    "LayerType",
    "Logger",
    "Metric",
    "NoArgs",
    "Outputs",
    "PluginError",
    "PruneError",
    "RunInfo",
    "Runtime",
    "ScoredLayer",
    "Spec",
    "StepRecord",
    "StorageError",
    "Task",
    "Traversal",
    "alignment",
    "atomic_write_text",
    "cache_dir",
    "check_name",
    "cut_parameter",
    "eager",
    "field",
    "hookimpl",
    "metric_rows",
    "numel",
    "onnx_bytes",
    "open_to_append",
    "run_file",
    "suggest",
    "weight_arguments",
]
