"""What ``prunekit plugins`` lists: each plugin, where it comes from, and what it registers."""

from __future__ import annotations

from typing import Any

from .contract import KINDS
from .manager import Manager, PluginInfo


def describe(plugins: Manager) -> list[dict[str, Any]]:
    """What ``prunekit plugins`` prints: each plugin, its distribution, what it registers."""
    registers: dict[str, dict[str, dict[str, str]]] = {}
    for kind in KINDS:
        for name, entry in plugins.registry(kind).items():
            described = getattr(entry.record, "description", "") or (entry.record.__doc__ or "").strip()
            registers.setdefault(entry.plugin, {}).setdefault(kind, {})[name] = (
                described.splitlines()[0] if described else ""
            )
    rows = []
    for name, plugin in plugins.pm.list_name_plugin():
        info = plugins.info.get(name, PluginInfo(name))
        hooks = sorted(h.name for h in plugins.pm.get_hookcallers(plugin) or ())
        own = registers.get(name, {})
        rows.append(
            {
                "name": name,
                "distribution": info.distribution,
                "version": info.version,
                "source": info.source,
                "hooks": hooks,
                "registers": {k: sorted(v) for k, v in sorted(own.items())},
                "descriptions": {k: dict(sorted(v.items())) for k, v in sorted(own.items())},
            }
        )
    return rows
