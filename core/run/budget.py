"""When the loop stops, and how much one step removes: the config's budget against the original cost."""

from __future__ import annotations

from ..cost.counting import CostReport
from ..pruning.selection import Budget
from .config import PruningConfig


def targets(cfg: PruningConfig, original: CostReport) -> tuple[float, float]:
    """(MACs, parameters) floors: the run is done at or below either. A target speed-up replaces
    the percent: only the measurement ends the run then."""
    keep = 1.0 - cfg.prune_away_percent / 100.0 if cfg.target_speedup is None else 0.0
    floor_macs = keep * original.macs if cfg.resource == "macs" else 0.0
    floor_params = keep * original.params if cfg.resource == "params" else 0.0
    return max(floor_macs, cfg.min_macs or 0), max(floor_params, cfg.min_params or 0)


def target_speedup(cfg: PruningConfig) -> float:
    """The measured speed-up a run with a latency budget or a target speed-up stops at."""
    return cfg.target_speedup or 1.0 / (1.0 - cfg.prune_away_percent / 100.0)


def measures(cfg: PruningConfig) -> bool:
    """Does the measured speed-up end the run (a latency budget, or a target speed-up)?"""
    return cfg.resource == "latency" or cfg.target_speedup is not None


def done(cfg: PruningConfig, original: CostReport, now: CostReport, speedup: float | None = None) -> bool:
    """The last measured ``speedup`` reached the target, where the run measures; or a floor is reached."""
    floor_macs, floor_params = targets(cfg, original)
    if now.macs <= floor_macs or now.params <= floor_params:
        return True
    return measures(cfg) and speedup is not None and speedup >= target_speedup(cfg) * (1 - 1e-9)


def step_budget(cfg: PruningConfig, original: CostReport, latency: tuple[float, float] | None = None) -> Budget:
    """What one step removes, never going below the run's floors. ``latency``: (the original
    layers' seconds in the latency table, the floor of those seconds for this step)."""
    floor_macs, floor_params = targets(cfg, original)
    seconds, floor_seconds = latency or (0.0, 0.0)
    step = cfg.step
    if step.kind == "percent":
        total = {"macs": original.macs, "params": original.params, "latency": seconds}[cfg.resource]
        return Budget(cfg.resource, step.amount / 100.0 * total, floor_macs, floor_params, floor_seconds)
    return Budget(step.kind, step.amount, floor_macs, floor_params, floor_seconds)
