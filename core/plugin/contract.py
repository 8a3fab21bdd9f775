"""The plugin contract in data: the kinds of registry and the hook filling each, the events, and
what makes a record of each kind valid."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..layer_type import LayerType
from ..records import Spec
from . import events, hookspecs

#: registry kind -> hook returning its records
KINDS = {
    "layer_type": "prunekit_layer_types",
    "model": "prunekit_models",
    "dataset": "prunekit_datasets",
    "criterion": "prunekit_criteria",
    "task_loss": "prunekit_task_losses",
    "distillation": "prunekit_distillation_losses",
    "logger": "prunekit_loggers",
    "task": "prunekit_tasks",
    "preset": "prunekit_presets",
    "runtime": "prunekit_runtimes",
}
EVENTS = ("run_started", "step_done", "epoch_done", "run_finished")
HOOKS = {name for module in (hookspecs, events) for name in dir(module) if name.startswith("prunekit_")}


def class_key(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def record_key(kind: str, record: Any) -> str:
    """Registry key: the name, except layer types, which clash by the module class they count."""
    if kind != "layer_type":
        return record.name
    return record.module if isinstance(record.module, str) else class_key(record.module)


def invalid(kind: str, record: Any) -> str:
    """Why a record breaks the contract of its kind ('' when it does not)."""
    name = getattr(record, "name", None)
    if not isinstance(name, str) or not name:
        return f"a {kind.replace('_', ' ')} record without a name: {record!r}"
    if kind == "layer_type":
        if not isinstance(record, LayerType):
            return f"layer type {name!r}, which is not a prunekit.LayerType"
        module = getattr(record, "module", None)
        by_path = isinstance(module, str) and "." in module
        if not by_path and not (isinstance(module, type) and issubclass(module, nn.Module)):
            return f"layer type {name!r} whose module is neither an nn.Module class nor its import path"
        if not record.declares_flow():
            return f"layer type {name!r}, which does not declare flow() (PRODUCER, CHANNELWISE, DEPTHWISE or OPAQUE)"
    elif isinstance(record, Spec) and not callable(record.factory):
        return f"{kind.replace('_', ' ')} {name!r} whose factory is not callable"
    return ""
