"""When the loop stops, and how much one step removes: the config's budget against the original cost."""

from __future__ import annotations

from ..cost.counting import CostReport
from ..pruning.selection import Budget
from .config import PruningConfig


def targets(cfg: PruningConfig, original: CostReport) -> tuple[float, float]:
    """(MACs, parameters) floors: the run is done at or below either."""
    keep = 1.0 - cfg.prune_away_percent / 100.0
    floor_macs = keep * original.macs if cfg.resource == "macs" else 0.0
    floor_params = keep * original.params if cfg.resource == "params" else 0.0
    return max(floor_macs, cfg.min_macs or 0), max(floor_params, cfg.min_params or 0)


def done(cfg: PruningConfig, original: CostReport, now: CostReport) -> bool:
    floor_macs, floor_params = targets(cfg, original)
    return now.macs <= floor_macs or now.params <= floor_params


def step_budget(cfg: PruningConfig, original: CostReport) -> Budget:
    """What one step removes, never going below the run's floors."""
    floor_macs, floor_params = targets(cfg, original)
    step = cfg.step
    if step.kind == "percent":
        total = original.macs if cfg.resource == "macs" else original.params
        return Budget(cfg.resource, step.amount / 100.0 * total, floor_macs, floor_params)
    return Budget(step.kind, step.amount, floor_macs, floor_params)
