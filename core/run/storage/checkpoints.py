"""Per-step checkpoints of a run: written completely (with a SHA-256 manifest), then moved into
place, so a kill at any moment leaves the last complete step intact and ``--resume`` continues
from it; loading verifies every file."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from ...errors import CheckpointError, PruneError
from ...pruning.plan import Plan
from ...run_files import CHECKPOINTS
from ...run_records import StepRecord
from .atomic_files import atomic_write_json, read_json, staged_dir, verify_manifest, write_manifest
from .weights import load_weights, save_weights

LAST = "last.json"


@dataclass
class Checkpoint:
    step: int
    plan: Plan
    weights: dict[str, torch.Tensor]
    steps: list[StepRecord]


def save(run_dir: Path, step: int, model: nn.Module, plan: Plan, steps: list[StepRecord]) -> Path:
    root = Path(run_dir) / CHECKPOINTS
    final = root / f"step_{step:04d}"
    with staged_dir(final) as tmp:
        save_weights(tmp / "weights.safetensors", model)
        atomic_write_json(tmp / "plan.json", plan.to_dict())
        atomic_write_json(tmp / "state.json", {"step": step, "steps": [asdict(s) for s in steps]})
        write_manifest(tmp)
    atomic_write_json(root / LAST, {"step": step, "dir": final.name})
    return final


def load_last(run_dir: Path) -> Checkpoint | None:
    """The last complete checkpoint of a run, or ``None`` when it has none."""
    root = Path(run_dir) / CHECKPOINTS
    if not (root / LAST).is_file():
        if root.is_dir() and any(root.glob("step_*")):
            raise CheckpointError(
                f"{str(root / LAST)!r} is missing, though the run has checkpoints; restore it to resume "
                '(it names the last complete step: {"step": N, "dir": "step_000N"}), or start again in a new run_dir'
            )
        return None
    last = read_json(root / LAST, "checkpoint index")
    if not isinstance(last, dict) or not isinstance(last.get("step"), int) or not isinstance(last.get("dir"), str):
        raise CheckpointError(f"{str(root / LAST)!r} is not a checkpoint index (needs 'step' and 'dir')")
    folder = root / Path(last["dir"]).name
    verify_manifest(folder, "checkpoint")
    plan = read_plan(folder / "plan.json", "checkpoint plan")
    return Checkpoint(last["step"], plan, load_weights(folder / "weights.safetensors"), _steps(folder / "state.json"))


def read_plan(path: Path, what: str) -> Plan:
    """The plan a checkpoint or an export holds; a malformed one is a CheckpointError naming it."""
    try:
        return Plan.from_dict(read_json(path, what))
    except PruneError as exc:
        raise CheckpointError(f"{what} {str(path)!r}: {exc}") from None


def _steps(path: Path) -> list[StepRecord]:
    state = read_json(path, "checkpoint state")
    records = state.get("steps") if isinstance(state, dict) else None
    names = {f.name for f in fields(StepRecord)}
    required = {f.name for f in fields(StepRecord) if f.default is MISSING and f.default_factory is MISSING}
    if not isinstance(records, list) or not all(isinstance(r, dict) and required <= set(r) <= names for r in records):
        raise CheckpointError(f"checkpoint state {str(path)!r} does not hold the step records of a run")
    try:
        return [StepRecord(**r) for r in records]
    except TypeError as exc:
        raise CheckpointError(f"checkpoint state {str(path)!r}: {exc}") from None
