"""Export and load: a pruned model is its builder, its plan and its weights — never a pickle."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import CheckpointError, PruneError
from ..plugin_manager import Manager, manager
from ..pruning.plan import Plan, apply_plan
from .atomic_files import atomic_write_json, read_json, staged_dir, verify_manifest, write_manifest
from .components import build_model
from .config import Config, ModelConfig
from .weights import load_into, load_weights, save_weights

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
        write_manifest(tmp)
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
    verify_manifest(folder, "export")
    model = build_model(_builder(folder / "model.json"), plugins)
    try:
        plan = Plan.from_dict(read_json(folder / "plan.json", "export plan"))
    except PruneError as exc:
        raise CheckpointError(f"export plan {str(folder / 'plan.json')!r}: {exc}") from None
    apply_plan(model, plan, plugins)
    load_into(model, load_weights(folder / "weights.safetensors"), f"export {str(folder)!r}")
    return model.eval()


def _builder(path: Path) -> ModelConfig:
    """The builder an export description names, checked field by field."""
    meta = read_json(path, "export description")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a prunekit export description")
    name, factory, args = meta.get("name"), meta.get("factory"), meta.get("args", {})
    if not isinstance(args, dict):
        raise CheckpointError(
            f"{str(path)!r}: 'args' must be a mapping of builder arguments, not {type(args).__name__}"
        )
    builders = (name, factory)
    if not any(isinstance(v, str) for v in builders) or not all(v is None or isinstance(v, str) for v in builders):
        raise CheckpointError(f"{str(path)!r}: needs the model's registered 'name' or its 'factory' import path")
    return ModelConfig(name, factory, args)
