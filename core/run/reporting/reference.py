"""The config reference, written from the schema itself: ``prunekit config --reference`` prints
it, ``docs/config.md`` holds it, and a test keeps the two the same."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from ...plugin.manager import Manager, manager
from ...schema import describe
from ..config import Config

HEADER = """# Config reference

Every key of a run config, its type, its default and what it does — generated from the schema by
`prunekit config --reference` (do not edit by hand). A config names its model and its data; every
other key has a default. `prunekit config my.yaml` prints a config with every default filled in,
`--set section.key=value` changes one setting on any command that reads a config.
"""


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "(section)"
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def _range(meta: Any) -> str:
    low, high = meta.get("min"), meta.get("max")
    parts = ([f"> {low:g}" if meta.get("open_min") else f"≥ {low:g}"] if low is not None else []) + (
        [f"≤ {high:g}"] if high is not None else []
    )
    return f" ({', '.join(parts)})" if parts else ""


def _summary(cls: Any) -> str:
    """The first line of a section's docstring (a dataclass's generated one says nothing)."""
    if not isinstance(cls, type):
        return ""
    doc = (cls.__doc__ or "").strip()
    return "" if not doc or doc.startswith(f"{cls.__name__}(") else doc.splitlines()[0]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _section(cls: type, path: str, title: str | None = None) -> list[str]:
    """The table of one dataclass, then the tables of the sections inside it."""
    hints = typing.get_type_hints(cls)
    rows, inner = [], []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        section = next((a for a in (tp, *typing.get_args(tp)) if dataclasses.is_dataclass(a)), None)
        key = f"{path}.{f.name}" if path else f.name
        doc = _cell((f.metadata.get("doc", "") or _summary(section)) + _range(f.metadata))
        rows.append(f"| `{key}` | {_cell(describe(tp))} | {_default(f)} | {doc} |")
        if isinstance(section, type):
            inner += _section(section, f"{key}.<name>" if typing.get_origin(tp) is dict else key)
    title = title or (f"## `{path}`" if path else "## Top level")
    intro = [_summary(cls)] if _summary(cls) else []
    return ["", title, "", *intro, *([""] if intro else []), "| key | type | default | meaning |", "|---|---|---|---|",
            *rows, *inner]  # fmt: skip


def _plugin_args(plugins: Manager) -> list[str]:
    """The arguments the built-in plugins declare (``Spec.args``), kind by kind."""
    out = ["", "## Arguments of the built-in plugins", "",
           "Given as `args:` beside the plugin's name (`data: {name: synthetic_eyes, args: {...}}`), or "
           "`pruning.criterion.args.<name>`, `loss.<name>.args`, `distillation.<name>.args`, `logging`."]  # fmt: skip
    builtin = {name for name, info in plugins.info.items() if info.distribution == "prunekit"}
    for kind in ("model", "dataset", "criterion", "task_loss", "distillation", "logger"):
        for name, entry in sorted(plugins.registry(kind).items()):
            args = getattr(entry.record, "args", None)
            if entry.plugin not in builtin or args is None or not dataclasses.fields(args):
                continue
            out += _section(args, "args", f"### {kind.replace('_', ' ')} `{name}`")
    return out


def reference(plugins: Manager | None = None) -> str:
    return "\n".join([HEADER.rstrip(), *_section(Config, ""), *_plugin_args(plugins or manager())]) + "\n"
