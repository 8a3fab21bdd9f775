"""Export and load: a pruned model is its builder, its plan and its weights — never a pickle."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ...errors import CheckpointError, PrunekitError
from ...plugin.manager import Manager, manager
from ...pruning.plan import Plan, apply_plan
from ..components import build_model
from ..config import Config, ModelConfig
from .atomic_files import atomic_write_json, read_json, staged_dir, verify_manifest, write_manifest
from .checkpoints import read_plan
from .weights import load_into, load_weights, save_weights

FORMAT = "prunekit-export"


def export(folder: Path, config: Config, model: nn.Module, plan: Plan, given: nn.Module | None = None) -> Path:
    """Write ``model.json`` (builder and arguments, or the class of the ``given`` model object),
    ``plan.json`` and ``weights.safetensors``."""
    folder = Path(folder)
    built_by = (
        {"object": f"{type(given).__module__}:{type(given).__qualname__}"}
        if given is not None
        else {"name": config.model.name, "factory": config.model.factory, "args": config.model.args}
    )
    with staged_dir(folder) as tmp:
        atomic_write_json(
            tmp / "model.json",
            {
                "format": FORMAT,
                "version": 1,
                **built_by,
                "plugins": {"load": config.plugins.load, "search": config.plugins.search},
            },
        )
        atomic_write_json(tmp / "plan.json", plan.to_dict())
        save_weights(tmp / "weights.safetensors", model)
        write_manifest(tmp)
    return folder


def export_folder(path: str | Path) -> Path:
    """The export folder of a run directory, or ``path`` itself when it is one."""
    path = Path(path)
    folder = path / "export" if (path / "export" / "model.json").is_file() else path
    if not (folder / "model.json").is_file():
        raise CheckpointError(
            f"{str(path)!r} is neither a run directory with an export nor an export folder (no model.json)"
        )
    return folder


def exported_from_object(path: str | Path) -> str | None:
    """The class (``module:QualName``) of the model object an export was made from, or ``None``
    when a registered builder or factory rebuilds it."""
    builder, _ = _builder(export_folder(path) / "model.json")
    return builder if isinstance(builder, str) else None


def load(
    path: str | Path, plugins: Manager | None = None, model: nn.Module | None = None, trust_code: bool = False
) -> nn.Module:
    """Rebuild a pruned model from a run directory or its export folder, weights loaded, eval mode.

    An export is data: it is rebuilt from a registered model of the installed plugins, or into
    ``model`` (a fresh instance, built as the original was). An export whose model needs code it
    names — a factory by import path, plugin modules or files — imports nothing unless you trust
    it (``trust_code=True``): without that, the error names what it would import.
    """
    folder = export_folder(path)
    verify_manifest(folder, "export")
    builder, needed = _builder(folder / "model.json")
    plan = read_plan(folder / "plan.json", "export plan")
    if isinstance(builder, str):
        if model is None:
            raise CheckpointError(
                f"{str(folder)!r} was exported from a model object ({builder}); load it with "
                "pk.load(path, model=...) and a fresh instance built as the original was"
            )
        if not _same_class(builder, type(model)):
            raise CheckpointError(
                f"{str(folder)!r} holds a {builder}, not a {type(model).__module__}:{type(model).__qualname__}; pass "
                f"model= a fresh {builder.partition(':')[2]} built as the original was (a class defined in a script, "
                "__main__, is matched by its name wherever it is imported from)"
            )
        plugins = plugins or manager()
    elif model is None:
        code = [f"factory {builder.factory!r}"] * bool(builder.factory) + [f"plugin {p!r}" for p in needed["load"]]
        if code and not trust_code:
            raise CheckpointError(
                f"{str(folder)!r} names code to import and run: {', '.join(code)}; an export is data, so "
                "nothing is imported unless you trust it: pk.load(path, trust_code=True) (prunekit export "
                "--trust-code), or pk.load(path, model=...) with a fresh instance of the model"
            )
        plugins = plugins or (Manager(load=needed["load"], search=needed["search"]) if needed["load"] else manager())
        _check_size(folder, builder, plan, plugins, needed["search"])
        model = build_model(builder, plugins, needed["search"])
    else:
        plugins = plugins or manager()
    apply_plan(model, plan, plugins)
    load_into(model, load_weights(folder / "weights.safetensors"), f"export {str(folder)!r}")
    return model.eval()


def _check_size(folder: Path, builder: ModelConfig, plan: Plan, plugins: Manager, search: tuple[str, ...]) -> None:
    """Build the model an export describes on the meta device (shapes, no memory) and cut it by
    its plan: an export whose arguments ask for more numbers than its weights file holds (a
    crafted ``width: 1000000``) is refused before anything is allocated."""
    try:
        with torch.device("meta"):
            shell = build_model(builder, plugins, search)
    except PrunekitError:
        raise
    except Exception:  # a builder that cannot build without memory: checked by loading below
        return
    apply_plan(shell, plan, plugins)
    wanted = sum(t.numel() for t in shell.state_dict().values())
    try:
        with safe_open(str(folder / "weights.safetensors"), "pt") as weights:
            held = sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())  # noqa: SIM118
    except (SafetensorError, OSError):
        return  # loading the weights says what is wrong with them
    if wanted != held:
        raise CheckpointError(
            f"{str(folder)!r}: the model its model.json describes, cut by its plan, holds {wanted:,} numbers, its "
            f"weights {held:,}; the export is not one prunekit wrote"
        )


def _same_class(exported: str, cls: type) -> bool:
    """Whether ``cls`` is the class an export names (``module:QualName``): by module and name, or
    by name alone where either side was defined in a script (``__main__``), since the same class
    is ``__main__:Net`` in the script that defines it and ``train:Net`` where another imports it."""
    module, _, name = exported.partition(":")
    return name == cls.__qualname__ and (module == cls.__module__ or "__main__" in (module, cls.__module__))


def _builder(path: Path) -> tuple[ModelConfig | str, dict[str, tuple[str, ...]]]:
    """The builder an export description names (or the class of the model object it was made
    from), checked field by field, and the plugins it needs."""
    meta = read_json(path, "export description")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a prunekit export description")
    if isinstance(meta.get("object"), str):
        return meta["object"], {"load": (), "search": ()}
    name, factory, args = meta.get("name"), meta.get("factory"), meta.get("args", {})
    if not isinstance(args, dict):
        raise CheckpointError(
            f"{str(path)!r}: 'args' must be a mapping of builder arguments, not {type(args).__name__}"
        )
    builders = (name, factory)
    if not any(isinstance(v, str) for v in builders) or not all(v is None or isinstance(v, str) for v in builders):
        raise CheckpointError(f"{str(path)!r}: needs the model's registered 'name' or its 'factory' import path")
    needed = meta.get("plugins", {})
    lists = {key: needed.get(key, []) if isinstance(needed, dict) else None for key in ("load", "search")}
    if not all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in lists.values()):
        raise CheckpointError(f"{str(path)!r}: 'plugins' must list plugin names ('load') and folders ('search')")
    return ModelConfig(name, factory, args), {key: tuple(v) for key, v in lists.items() if v is not None}
