"""The run configuration: one YAML file, validated up front against these dataclasses."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .errors import ConfigError
from .schema import build, field, to_dict
from .selection import ELEMENT_MACS


@dataclass
class ModelConfig:
    name: str = field("unet", doc="registered model builder")
    args: dict[str, Any] = field({}, doc="arguments of the builder")
    checkpoint: Optional[str] = field(None, doc="weights to start from (safetensors or state dict)")


@dataclass
class DataConfig:
    name: str = field("synthetic_eyes", doc="registered dataset")
    args: dict[str, Any] = field({}, doc="arguments of the dataset")
    batch_size: int = field(8, min=1)
    num_workers: int = field(0, min=0)


@dataclass
class CostConfig:
    include: list[str] = field([], doc="optional cost kinds: norm, activation, pooling, upsample, all")
    overrides: dict[str, str] = field({}, doc='{"pkg.mod.Layer": "pkg.mod:macs_fn"}')


@dataclass
class PluginsConfig:
    load: list[str] = field([], doc="entry-point names or dotted module paths")
    disable: list[str] = field([], doc="plugin names to block")
    autoload: bool = field(True, doc="load every installed plugin")


@dataclass
class CriterionConfig:
    omega: Optional[float] = field(None, min=0.0, max=1.0,
                                   doc="IPAD shortcut: weight_norm ω, activation_deviation 1 − ω")
    weights: dict[str, float] = field({}, doc="criterion name -> weight of its normalised score")
    args: dict[str, dict[str, Any]] = field({}, doc="criterion name -> its arguments")
    normalize: Literal["none", "max", "l2", "mean", "rank"] = field("l2", doc="per-layer normalisation")
    reduce: Literal["mean", "sum", "max"] = field("mean", doc="how coupled layers' scores combine")
    per_cost: Literal["none", "macs", "params", "latency"] = field(
        "none", doc="rank by importance per unit of this cost the channel's removal saves")
    element_macs: float = field(ELEMENT_MACS, min=0.0,
                                doc="latency estimate: MACs one activation element read or written costs")

    def check(self, path: str) -> None:
        if self.omega is not None and self.weights:
            raise ConfigError(f"{path}: give either omega or weights, not both")
        for name, weight in self.weights.items():
            if weight < 0:
                raise ConfigError(f"{path}.weights.{name}: {weight!r} is out of range; it must be >= 0")

    def resolved(self) -> dict[str, float]:
        if self.omega is not None:
            return {"weight_norm": self.omega, "activation_deviation": 1.0 - self.omega}
        return dict(self.weights) or {"weight_norm": 0.5, "activation_deviation": 0.5}


@dataclass
class StepConfig:
    macs: Optional[int] = field(None, min=1, doc="MACs to remove per step")
    params: Optional[int] = field(None, min=1, doc="parameters to remove per step")
    filters: Optional[int] = field(None, min=1, doc="channels to remove per step")
    percent: Optional[float] = field(None, min=0, max=100, open_min=True,
                                     doc="percent of the original resource to remove per step")

    def check(self, path: str) -> None:
        given = [k for k in ("macs", "params", "filters", "percent") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"{path or 'step'}: give exactly one of macs, params, filters, percent (got {given or 'none'})")

    @property
    def kind(self) -> str:
        return next(k for k in ("macs", "params", "filters", "percent") if getattr(self, k) is not None)

    @property
    def amount(self) -> float:
        return getattr(self, self.kind)


@dataclass
class PruningConfig:
    resource: Literal["macs", "params"] = field("macs", doc="what the budget counts")
    prune_away_percent: float = field(50.0, min=0, max=100, open_min=True,
                                      doc="stop when this percent of the resource is gone")
    min_macs: Optional[int] = field(None, min=0, doc="also stop at this many MACs")
    min_params: Optional[int] = field(None, min=0, doc="also stop at this many parameters")
    step: StepConfig = field(StepConfig(percent=10.0))
    criterion: CriterionConfig = field(CriterionConfig())
    layer_limit_percent: float = field(75.0, min=0, max=100, doc="at most this % of a layer's parameters")
    block_limit_percent: float = field(75.0, min=0, max=100, doc="at most this % of a block's parameters")
    min_channels: int = field(1, min=1, doc="channels every layer keeps at least")
    round_to: Optional[int] = field(None, min=1, doc="keep channel counts multiples of this")
    calibration_batches: int = field(8, min=1, doc="batches of the calibration pass")
    activations_at: Literal["output", "activation"] = field(
        "output", doc="activation criteria observe the producer's raw output, or the activation after it")
    max_steps: int = field(100, min=1)
    protected: list[str] = field([], doc="layers never pruned, besides the traversal's")


@dataclass
class OptimizerConfig:
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = field(1e-3, min=0, open_min=True)
    weight_decay: float = field(0.0, min=0)
    momentum: float = field(0.9, min=0, max=1)


@dataclass
class ScheduleConfig:
    name: Literal["none", "cosine", "plateau"] = "none"
    patience: int = field(2, min=0, doc="plateau: epochs without improvement before lowering the LR")
    factor: float = field(0.5, min=0, max=1, open_min=True, doc="plateau: LR multiplier")


@dataclass
class PhaseConfig:
    """What every training phase (baseline, retraining, fine-tuning) shares."""

    optimizer: OptimizerConfig = field(OptimizerConfig())
    schedule: ScheduleConfig = field(ScheduleConfig())
    grad_clip: Optional[float] = field(None, min=0, open_min=True)
    max_bad_batches: int = field(5, min=1, doc="abort after this many non-finite losses in a row")


@dataclass
class TrainConfig(PhaseConfig):
    epochs: int = field(0, min=0, doc="train a baseline from scratch for this many epochs")


@dataclass
class RetrainConfig(PhaseConfig):
    epochs_per_step: int = field(1, min=0)


@dataclass
class FinetuneConfig(PhaseConfig):
    epochs: int = field(0, min=0)
    schedule: ScheduleConfig = field(ScheduleConfig(name="cosine"))


@dataclass
class LossTerm:
    weight: float = field(1.0, min=0)
    args: dict[str, Any] = field({})


@dataclass
class LossScheduleConfig:
    name: Literal["none", "ritnet"] = field("none", doc="ritnet: Dice weight 1 → 0 and surface 0 → 1 over epochs")
    epochs: int = field(125, min=1)


@dataclass
class Config:
    seed: int = 0
    device: str = field("auto", doc="auto, cpu, cuda or cuda:N")
    run_dir: str = field("runs/prunekit")
    input_size: Optional[list[int]] = field(None, doc="example input for tracing; default: one batch item")
    model: ModelConfig = field(ModelConfig())
    data: DataConfig = field(DataConfig())
    cost: CostConfig = field(CostConfig())
    plugins: PluginsConfig = field(PluginsConfig())
    pruning: PruningConfig = field(PruningConfig())
    train: TrainConfig = field(TrainConfig())
    retrain: Union[RetrainConfig, Literal["none"]] = field(RetrainConfig())
    finetune: FinetuneConfig = field(FinetuneConfig())
    loss: dict[str, LossTerm] = dataclasses.field(default_factory=lambda: {"cross_entropy": LossTerm()})
    loss_schedule: LossScheduleConfig = field(LossScheduleConfig())
    distillation: dict[str, LossTerm] = field({})
    logging: list[str] = field(["console", "jsonl"])

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def load(source: str | Path | dict | None = None) -> Config:
    """A validated :class:`Config` from a YAML path, a YAML string of the demo, or a dict."""
    if isinstance(source, dict):
        return build(Config, _default_loss(source))
    if source is None:
        return build(Config, {})
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return build(Config, _default_loss(data or {}))


def _default_loss(data: Any) -> Any:
    # `loss: {cross_entropy: 1.0}` is shorthand for `{cross_entropy: {weight: 1.0}}`
    if isinstance(data, dict):
        for key in ("loss", "distillation"):
            if isinstance(data.get(key), dict):
                data = {**data, key: {k: ({"weight": v} if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                                      for k, v in data[key].items()}}
    return data


def demo_text() -> str:
    """The built-in demo config, as YAML text."""
    return resources.files("prunekit").joinpath("demo.yaml").read_text()

