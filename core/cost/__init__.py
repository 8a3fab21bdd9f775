"""Cost: MACs and parameters counted from the layer types (or your cost functions), predicted for
any removal, and measured latency.

The public names are the ones listed here; the modules behind them may move.
"""

from .cost_model import Cost, CostModel
from .counting import CostReport, LayerCost, count
from .latency import measure
from .latency_table import LatencyTable, alignment, build_table, calibrate_table, layer_sum

__all__ = [
    "Cost",
    "CostModel",
    "CostReport",
    "LatencyTable",
    "LayerCost",
    "alignment",
    "build_table",
    "calibrate_table",
    "count",
    "layer_sum",
    "measure",
]
