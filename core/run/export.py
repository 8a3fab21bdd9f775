"""Export and load: a pruned model is its builder, its plan and its weights — never a pickle."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import CheckpointError
from ..plugin_manager import Manager, manager
from ..pruning.plan import Plan, apply_plan
from .atomic_files import atomic_write_json, load_into, load_weights, read_json, save_weights, staged_dir
from .components import build_model
from .config import Config, ModelConfig

FORMAT = "prunekit-export"


def export(folder: Path, config: Config, model: nn.Module, plan: Plan) -> Path:
    """Write ``model.json`` (builder and arguments), ``plan.json`` and ``weights.safetensors``."""
    folder = Path(folder)
    with staged_dir(folder) as tmp:
        atomic_write_json(
            tmp / "model.json",
            {
                "format": FORMAT,
                "version": 1,
                "name": config.model.name,
                "factory": config.model.factory,
                "args": config.model.args,
            },
        )
        atomic_write_json(tmp / "plan.json", plan.to_dict())
        save_weights(tmp / "weights.safetensors", model)
    return folder


def load(path: str | Path, plugins: Manager | None = None) -> nn.Module:
    """Rebuild a pruned model from a run directory or its export folder, weights loaded, eval mode.

    The builder and layer types come from ``plugins`` (default: the process-wide plugin manager).
    """
    plugins = plugins or manager()
    path = Path(path)
    folder = path / "export" if (path / "export" / "model.json").is_file() else path
    if not (folder / "model.json").is_file():
        raise CheckpointError(
            f"{str(path)!r} is neither a run directory with an export nor an export folder (no model.json)"
        )
    meta = read_json(folder / "model.json", "export description")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("args", {}), dict):
        raise CheckpointError(f"{str(folder / 'model.json')!r} is not a prunekit export description")
    builder = ModelConfig(meta.get("name"), meta.get("factory"), meta.get("args", {}))
    model = build_model(builder, plugins)
    apply_plan(model, Plan.from_dict(read_json(folder / "plan.json", "export plan")), plugins)
    load_into(model, load_weights(folder / "weights.safetensors"), f"export {str(folder)!r}")
    return model.eval()
