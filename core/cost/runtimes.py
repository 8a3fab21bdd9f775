"""Runtimes by name: the plugin a name stands for, checked to run on the device here."""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..seam import Factories, Runtime


def runtime_named(runtime: str | Runtime, plugins: Factories, device: torch.device) -> Runtime:
    """The runtime ``runtime`` names (a registered one: ``eager``, ``compile``, ``onnxruntime``, a
    plugin's) or is, ready to time models on ``device``; a ``ConfigError`` saying why where it cannot."""
    found = plugins.get("runtime", runtime) if isinstance(runtime, str) else runtime
    why = found.available(torch.device(device))
    if why is not None:
        raise ConfigError(f"runtime {found.name!r} cannot run here: {why}")
    return found
