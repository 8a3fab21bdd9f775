"""Per-step checkpoints of a run: written completely, then moved into place, so a kill at any
moment leaves the last complete step intact and ``--resume`` continues from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..pruning.plan import Plan
from .atomic_files import atomic_write_json, load_weights, read_json, save_weights, staged_dir

DIR = "checkpoints"
LAST = "last.json"


@dataclass
class Checkpoint:
    step: int
    plan: Plan
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]


def save(run_dir: Path, step: int, model: nn.Module, plan: Plan, state: dict[str, Any]) -> Path:
    root = Path(run_dir) / DIR
    final = root / f"step_{step:04d}"
    with staged_dir(final) as tmp:
        save_weights(tmp / "weights.safetensors", model)
        atomic_write_json(tmp / "plan.json", plan.to_dict())
        atomic_write_json(tmp / "state.json", {"step": step, **state})
    atomic_write_json(root / LAST, {"step": step, "dir": final.name})
    return final


def load_last(run_dir: Path) -> Checkpoint | None:
    """The last complete checkpoint of a run, or ``None`` when it has none."""
    root = Path(run_dir) / DIR
    if not (root / LAST).is_file():
        return None
    last = read_json(root / LAST, "checkpoint index")
    if not isinstance(last, dict) or not isinstance(last.get("step"), int) or not last.get("dir"):
        raise CheckpointError(f"{str(root / LAST)!r} is not a checkpoint index (needs 'step' and 'dir')")
    folder = root / str(last["dir"])
    state = read_json(folder / "state.json", "checkpoint state")
    plan = Plan.from_dict(read_json(folder / "plan.json", "checkpoint plan"))
    return Checkpoint(int(last["step"]), plan, load_weights(folder / "weights.safetensors"), state)
