"""Tracing a model's real forward into a channel graph: which channels must be removed together.

The public names are the ones listed here; the modules behind them may move.
"""

from .channel_graph import ChannelGraph, Group, LayerNode, Member, trace
from .constraints import sample
from .overrides import CostFunctions, Overrides

__all__ = ["ChannelGraph", "CostFunctions", "Group", "LayerNode", "Member", "Overrides", "sample", "trace"]
