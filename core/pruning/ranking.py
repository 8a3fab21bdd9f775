"""How channels are ranked: the criterion mix, its per-layer normalisation and reduction, ranking per
unit of cost — the settings (``pruning.criterion`` in a config) and the criteria they build."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError
from ..schema import build, field
from ..seam import Factories
from .scoring import Normalization, Reduction
from .selection import ELEMENT_MACS

ActivationsAt = Literal["output", "activation"]


@dataclass
class CriterionConfig:
    """How channels are ranked: a weighted mix of criteria, normalised per layer."""

    weights: dict[str, float] = field({}, doc="criterion name -> weight of its normalised score; empty: the task's mix")
    args: dict[str, dict[str, Any]] = field({}, doc="criterion name -> its arguments")
    normalize: Normalization = field("rank", doc="per-layer normalisation")
    reduce: Reduction = field("mean", doc="how coupled layers' scores combine")
    per_cost: Literal["none", "macs", "params", "latency"] = field(
        "none", doc="rank by importance per unit of this cost the channel's removal saves"
    )
    element_macs: float = field(
        ELEMENT_MACS, min=0.0, doc="latency estimate: MACs one activation element read or written costs"
    )

    def check(self, path: str) -> None:
        for name, weight in self.weights.items():
            if weight < 0:
                raise ConfigError(f"{path}.weights.{name}: {weight!r} is out of range; it must be >= 0")
        if self.weights and not any(self.weights.values()):
            raise ConfigError(
                f"{path}.weights: every weight is 0, so no criterion ranks the channels; give one a positive weight"
            )


#: what ranks channels where no data is given: filter norms need nothing but the weights
DATA_FREE = CriterionConfig(weights={"weight_norm": 1.0})

#: the mix a config that names no criteria ranks by, unless its task names its own: filter norms
#: and first-order Taylor, equal weights (benchmarks/quality.py, docs/benchmarks.md)
DEFAULT_MIX: dict[str, float] = {"weight_norm": 0.5, "taylor": 0.5}


def default_mix(cfg: CriterionConfig, task: object = None) -> CriterionConfig:
    """``cfg``, or where it names no criteria, the task's ``default_criterion`` (if it has one),
    else :data:`DEFAULT_MIX`."""
    if cfg.weights:
        return cfg
    mix = getattr(task, "default_criterion", None)
    if mix is None:
        return dataclasses.replace(cfg, weights=dict(DEFAULT_MIX))
    name = getattr(task, "name", type(task).__name__)
    return dataclasses.replace(
        cfg, weights=build(CriterionConfig, {"weights": mix}, f"task {name!r}: default_criterion").weights
    )


def build_criteria(cfg: CriterionConfig, plugins: Factories) -> dict[str, tuple[Any, float]]:
    """name -> (criterion, weight), with fresh statistics."""
    if not cfg.weights:
        raise ConfigError(
            "pruning.criterion.weights: no criterion to rank channels by; name one, e.g. {weight_norm: 1.0} "
            "(`prunekit plugins` lists them)"
        )
    return {
        name: (plugins.get("criterion", name, **cfg.args.get(name, {})), weight) for name, weight in cfg.weights.items()
    }


def preset_criteria(name: str, plugins: Factories) -> tuple[CriterionConfig, ActivationsAt]:
    """The criterion mix and activation tap a registered preset names."""
    fragment = plugins.get("preset", name)
    if not isinstance(fragment, dict):
        raise ConfigError(f"preset {name!r} gave {type(fragment).__name__}, not a mapping of settings")
    tap = fragment.get("activations_at", "activation")
    if tap not in ("output", "activation"):
        raise ConfigError(f"preset {name!r}: activations_at {tap!r} is not allowed; valid: activation, output")
    return default_mix(build(CriterionConfig, fragment.get("criterion", {}), f"preset {name!r} criterion")), tap
