"""Presets: named sets of pruning settings a config builds on (``pruning.preset``).

``default`` is what a config that names no preset gets; ``ipad`` is the configuration of the
IPAD paper (Vitek et al. 2023): ω = 0.5 between filter norms and activation deviation on the
raw producer output, 74 % of the MACs removed, 75 % layer and block limits.
"""

from __future__ import annotations

import copy
from typing import Any

from prunekit.plugin import NoArgs, Spec, hookimpl

#: Chosen by ``benchmarks/quality.py`` (see docs/benchmarks.md): each criterion ranked within its
#: layer, observed after the activation. No ``weights``: a run ranks by its task's mix (Taylor
#: alone for classification), else by filter norms and first-order Taylor in equal parts.
DEFAULT: dict[str, Any] = {"criterion": {"normalize": "rank"}, "activations_at": "activation"}

IPAD: dict[str, Any] = {
    "criterion": {
        "weights": {"weight_norm": 0.5, "activation_deviation": 0.5},
        "normalize": "l2",
        "args": {"weight_norm": {"p": 1}, "activation_deviation": {"p": 1}},
    },
    "activations_at": "output",
    "prune_away_percent": 74,
    "layer_limit_percent": 75,
    "block_limit_percent": 75,
}


@hookimpl
def prunekit_presets() -> list[Spec]:
    return [
        Spec(
            "default",
            lambda: copy.deepcopy(DEFAULT),
            "prunekit's defaults: the task's criteria (classification: Taylor; else weight norm and Taylor), "
            "ranked per layer",
            NoArgs,
        ),
        Spec(
            "ipad",
            lambda: copy.deepcopy(IPAD),
            "the IPAD paper: ω = 0.5, 74 % of MACs, 75 % layer and block limits",
            NoArgs,
        ),
    ]
