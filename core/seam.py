"""What the pipeline's layers ask of the plugins: the narrow seam beneath the run.

``graph/``, ``cost/`` and ``pruning/`` see only these protocols, never the plugin manager. The
manager offers both; a run resolves it once and passes it down, and a call of the public API
without ``plugins=`` gets the process-wide one, set by the package's face (``prunekit/__init__``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from .layer_type import LayerType
from .records import Traversal


class Runtime(Protocol):
    """Where a model is deployed, to be timed there: eager PyTorch, ``torch.compile``, ONNX Runtime…

    ``prepare(model, example)`` returns a callable that runs one forward of ``model`` on
    ``example`` the way the runtime runs it — finished when it returns (a GPU runtime
    synchronises) — so that prunekit can time calls of several models in turns. ``times_layers``
    says whether the latency table times single layers in this runtime too; where it is false
    (compiling every layer variant would take minutes), layers are timed in eager PyTorch and the
    runtime's whole forwards calibrate them.
    """

    name: str
    times_layers: bool

    def available(self, device: torch.device) -> str | None:
        """``None`` where the runtime can run on ``device`` here, else why not, in one line (naming
        the package or extra to install)."""
        ...

    def version(self) -> str:
        """What the latency cache keys its tables by, beside the name: the runtime's version."""
        ...

    def alignment(self, device: torch.device) -> int:
        """The channel multiple the runtime runs fast on ``device``: pruning keeps counts at it."""
        ...

    def prepare(self, model: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
        """A callable running one forward of ``model`` (in eval mode) on ``example``."""
        ...


class LayerTypes(Protocol):
    """How modules are counted and cut, and what is known about a model's structure."""

    def layer_type(self, cls: type) -> LayerType | None:
        """The layer type of module class ``cls`` (or its nearest base class), or ``None``."""
        ...

    def traversal(self, model: nn.Module) -> Traversal | None:
        """What a traversal plugin knows about ``model`` (blocks, protected layers, taps), or ``None``."""
        ...

    def approximations(self) -> list[str]:
        """The approximate cuts the layer types offer (``layer_norm``)."""
        ...


class Factories(LayerTypes, Protocol):
    """Layer types, and the named objects a pruning step builds: criteria and presets."""

    def get(self, kind: str, name: str, **params: Any) -> Any:
        """The object ``name`` of ``kind`` built with ``params``; a ``PluginError`` when unknown."""
        ...


#: the provider of the plugins a call without ``plugins=`` uses, set by the package's face
_DEFAULT: dict[str, Callable[[], Factories]] = {}


def use_by_default(provider: Callable[[], Factories]) -> None:
    """What a call without ``plugins=`` uses: set once by the package's face (the process-wide
    plugin manager), so that the layers never import the manager themselves."""
    _DEFAULT["plugins"] = provider


def resolve(plugins: Factories | None) -> Factories:
    """``plugins``, or the face's default."""
    return plugins if plugins is not None else _DEFAULT["plugins"]()
