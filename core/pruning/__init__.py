"""Pruning: one step as an object (trace → calibrate → score → select → cut), the budget policies
that drive steps, the one-call door, and the pieces beneath: calibration, scoring, selection,
surgery and the plan that records a cut.

The public names — what benchmarks, ``prunekit.testing`` and your code may rely on — are the ones
listed here; the modules behind them may move.
"""

from .budget import ResourceBudget
from .calibration import calibrate
from .latency_budget import LatencyBudget, thinned_copy
from .plan import Plan, apply_plan
from .prune_to import Pruned, prune_to
from .ranking import CriterionConfig, build_criteria
from .scoring import NORMALIZATIONS, group_scores, scored_layers
from .selection import COST_MEASURES, Limits, Reference, Selection, StepBudget, per_cost, select
from .step import Proposal, PruningStep
from .surgery import prune, remove

__all__ = [
    "COST_MEASURES",
    "NORMALIZATIONS",
    "CriterionConfig",
    "LatencyBudget",
    "Limits",
    "Plan",
    "Proposal",
    "Pruned",
    "PruningStep",
    "Reference",
    "ResourceBudget",
    "Selection",
    "StepBudget",
    "apply_plan",
    "build_criteria",
    "calibrate",
    "group_scores",
    "per_cost",
    "prune",
    "prune_to",
    "remove",
    "scored_layers",
    "select",
    "thinned_copy",
]
