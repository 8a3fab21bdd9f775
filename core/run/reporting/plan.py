"""What a run is about to do, said before it starts: model, data, budget, steps, run directory."""

from __future__ import annotations

import math
from typing import Any

from ..config import Config


def _named(name: str | None, factory: str | None, args: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in args.items())
    return f"{name or factory}" + (f" ({shown})" if shown else "")


def budget_line(config: Config) -> str:
    """The budget in words, with the steps it takes where the config says."""
    p = config.pruning
    kind, amount = p.step.kind, p.step.amount
    per_step = f"{amount:g} % of the original {p.resource}" if kind == "percent" else f"{amount:g} {kind}"
    if p.measures():
        target = p.target()
        goal = f"until a measured speed-up of {target:.2f}× in {p.runtime} on the run's device"
    else:
        goal = f"{p.prune_away_percent:g} % of the {'MACs' if p.resource == 'macs' else 'parameters'}"
    steps = ""
    if kind == "percent" and not p.measures():
        steps = f", about {math.ceil(p.prune_away_percent / amount - 1e-9)} steps"
    aligned = {"auto": ", channel counts aligned", "none": ""}.get(
        str(p.align), f", channel counts in multiples of {p.align}"
    )
    if p.round_to is not None:
        aligned = f", channel counts in multiples of {p.round_to}"
    return f"remove {goal}, {per_step} per step{steps}{aligned} (at most {p.max_steps})"


def plan_text(config: Config) -> str:
    """A few lines a person reads before a run starts."""
    retrain = config.retrain
    if retrain == "none":
        training = "no retraining (one-shot)"
    elif retrain.function:
        training = f"retraining by {retrain.function}"
    else:
        training = f"{retrain.epochs_per_step} retraining epoch(s) per step"
    if config.finetune.epochs:
        training += f", {config.finetune.epochs} fine-tuning epoch(s)"
    guard = (
        "off"
        if config.pruning.max_drop is None and config.pruning.class_floor is None
        else f"max_drop {config.pruning.max_drop} points, class_floor {config.pruning.class_floor}"
    )
    lines = [
        f"model:   {_named(config.model.name, config.model.factory, config.model.args)}",
        f"data:    {_named(config.data.name, config.data.factory, config.data.args)}",
        f"budget:  {budget_line(config)}",
        f"train:   {training}; guard {guard}",
        f"run dir: {config.run_dir}",
    ]
    return "\n".join(lines)
