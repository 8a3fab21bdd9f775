"""The config's budget as a policy object — MACs or parameters counted, or a speed-up measured in
the runtime the model is deployed with — and the channel multiple its steps keep counts at."""

from __future__ import annotations

import torch
from torch import nn

from ..cost.counting import CostReport
from ..cost.latency_table import LatencyTable
from ..pruning.budget import ResourceBudget
from ..pruning.latency_budget import LatencyBudget
from ..seam import Runtime
from .config import PruningConfig


def alignment(cfg: PruningConfig, runtime: Runtime, device: torch.device) -> int | None:
    """The channel multiple ``cfg`` keeps counts at: its ``round_to``, else its ``align`` (``auto``:
    the runtime's on the device; ``none``: none)."""
    if cfg.round_to is not None:
        return cfg.round_to
    if cfg.align == "auto":
        return runtime.alignment(device)
    return None if cfg.align == "none" else cfg.align


def target_speedup(cfg: PruningConfig) -> float:
    """The measured speed-up a run with a latency budget or a target speed-up stops at."""
    return cfg.target_speedup or 1.0 / (1.0 - cfg.prune_away_percent / 100.0)


def measures(cfg: PruningConfig) -> bool:
    """Does the measured speed-up end the run (a latency budget, or a target speed-up)?"""
    return cfg.resource == "latency" or cfg.target_speedup is not None


def needs_table(cfg: PruningConfig) -> bool:
    """Does the run time its layers (to stop on a measurement, or to rank per second saved)?"""
    return measures(cfg) or cfg.criterion.per_cost == "latency"


def policy(
    cfg: PruningConfig,
    original: CostReport,
    teacher: nn.Module,
    timing: tuple[LatencyTable, torch.Tensor] | None = None,
    runtime: Runtime | None = None,
) -> ResourceBudget:
    """The budget policy ``cfg`` asks for; ``timing`` (the teacher's latency table and the batch
    it was calibrated with) is needed where the run measures, in ``runtime``."""
    step = (cfg.step.kind, cfg.step.amount)
    if not measures(cfg):
        return ResourceBudget(original, cfg.resource, cfg.prune_away_percent, step, cfg.min_macs, cfg.min_params)
    assert timing is not None, "a run that measures its speed-up builds its latency table first"
    table, example = timing
    return LatencyBudget(
        original,
        table,
        teacher,
        example,
        target_speedup(cfg),
        cfg.resource,
        step,
        cfg.min_macs,
        cfg.min_params,
        cfg.latency_repeats,
        cfg.latency_checks,
        runtime=runtime,
    )
