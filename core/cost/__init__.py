"""Cost: MACs and parameters counted from the layer types (or your cost functions), predicted for
any removal, and measured latency.

The public names are the ones listed here; the modules behind them may move.
"""

from ..eager import alignment, eager
from .cost_model import Cost, CostModel
from .counting import CostReport, LayerCost, count
from .latency import Speedup, measure, measure_rounds, speedup
from .latency_table import LatencyTable, build_table, calibrate_table, layer_sum
from .runtimes import runtime_named

__all__ = [
    "Cost",
    "CostModel",
    "CostReport",
    "LatencyTable",
    "LayerCost",
    "Speedup",
    "alignment",
    "build_table",
    "calibrate_table",
    "count",
    "eager",
    "layer_sum",
    "measure",
    "measure_rounds",
    "runtime_named",
    "speedup",
]
