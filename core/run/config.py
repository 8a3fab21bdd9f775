"""The run configuration: one YAML file, validated up front against these dataclasses.

Settings that name plugins (the criterion mix, say) have no defaults here: they come from the
``pruning.preset`` a plugin registers, merged beneath what the config says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError, PluginError, suggest
from ..graph.overrides import CostFunctions
from ..plugin.manager import Manager, for_settings
from ..pruning.settings import PruningConfig, beneath
from ..schema import build, field, to_dict
from ..training.settings import LossScheduleConfig, PhaseConfig, ScheduleConfig
from .config_source import read_source, shorthand, with_settings


@dataclass
class ModelConfig:
    """The network to prune: a registered builder or your factory, and weights to start from."""

    name: str | None = field(None, doc="registered model builder")
    factory: str | None = field(None, doc='a builder by import path, "pkg.module:function"')
    args: dict[str, Any] = field({}, doc="arguments of the builder")
    checkpoint: str | None = field(
        None, doc="weights to start from: .safetensors, a torch.save'd state_dict, or a Lightning .ckpt"
    )
    strict: bool = field(
        True, doc="the checkpoint must match every tensor; false loads those that match and reports the rest"
    )

    def check(self, path: str) -> None:
        if self.name is not None and self.factory is not None:
            raise ConfigError(f"{path}: give either name or factory, not both")


@dataclass
class DataConfig:
    """The data: a registered dataset or your factory, batched."""

    name: str | None = field(None, doc="registered dataset")
    factory: str | None = field(
        None,
        doc='your data by import path, "pkg.module:function", found beside the config: returns DataSplits or '
        "(train, val) iterables of batches",
    )
    args: dict[str, Any] = field({}, doc="arguments of the dataset or factory")
    batch_size: int = field(8, min=1, doc="samples per batch (a dataset plugin's data)")
    num_workers: int = field(0, min=0, doc="DataLoader worker processes")

    def check(self, path: str) -> None:
        if self.name is not None and self.factory is not None:
            raise ConfigError(f"{path}: give either name or factory, not both")


@dataclass
class CostConfig:
    """What counts as cost: optional layer kinds, and your cost functions."""

    include: list[str] = field([], doc="optional cost kinds: norm, activation, pooling, upsample, all")
    overrides: dict[str, str] = field(
        {},
        doc="your MACs functions: layer (module name, glob, class or its import path, torch.nn name) -> "
        '"module:function", found beside the config as model.factory is',
    )
    param_overrides: dict[str, str] = field({}, doc="your parameter-count functions, keyed as overrides")


@dataclass
class PluginsConfig:
    """Which plugins a run loads beside the installed ones."""

    load: list[str] = field([], doc="entry-point names, dotted module paths or plugin files (./my_plugin.py)")
    disable: list[str] = field([], doc="plugin names to block")
    autoload: bool = field(True, doc="load every installed plugin")
    search: list[str] = field([], doc="folders where load finds modules and files; default: the config file's")


@dataclass
class TrainConfig(PhaseConfig):
    """Training the baseline from scratch (unless model.checkpoint gives its weights)."""

    epochs: int = field(0, min=0, doc="train a baseline from scratch for this many epochs")


@dataclass
class RetrainConfig(PhaseConfig):
    """Retraining after every pruning step (`retrain: none`: one-shot)."""

    epochs_per_step: int = field(1, min=0, doc="retraining epochs after each cut")
    function: str | None = field(
        None, doc='your retraining, "pkg.module:function(step)", called once per step in place of prunekit\'s trainer'
    )


@dataclass
class FinetuneConfig(PhaseConfig):
    """Fine-tuning once the budget is met."""

    epochs: int = field(0, min=0, doc="fine-tuning epochs after the last step")
    schedule: ScheduleConfig = field(ScheduleConfig(name="cosine"))


@dataclass
class LossTerm:
    """One loss: its weight and its arguments."""

    weight: float = field(1.0, min=0, doc="its factor in the total loss")
    args: dict[str, Any] = field({}, doc="the loss's arguments")


@dataclass
class Config:
    """A run."""

    seed: int = field(0, doc="fixes data order, initialisation and tie-breaking; each step derives its own")
    device: str = field("auto", doc="auto, cpu, cuda or cuda:N")
    run_dir: str = field("runs/prunekit", doc="where the run writes: a new or empty folder, or one of its own runs")
    input_size: list[int] | None = field(None, doc="example input for tracing; default: one batch item")
    model: ModelConfig = field(ModelConfig())
    data: DataConfig = field(DataConfig())
    cost: CostConfig = field(CostConfig())
    plugins: PluginsConfig = field(PluginsConfig())
    pruning: PruningConfig = field(PruningConfig())
    train: TrainConfig = field(TrainConfig())
    retrain: RetrainConfig | Literal["none"] = field(RetrainConfig())
    finetune: FinetuneConfig = field(FinetuneConfig())
    task: str | None = field(None, doc="registered task; default: the one the dataset names")
    loss: dict[str, LossTerm] = field({}, doc="task losses; default: the task's")
    loss_schedule: LossScheduleConfig = field(LossScheduleConfig())
    distillation: dict[str, LossTerm] = field({}, doc="distillation losses from the teacher: name -> weight and args")
    distillation_balance: Literal["none", "auto"] = field(
        "none",
        doc="auto: each phase scales every distillation term to its weight × the task loss on its first batches; "
        "also written distillation: {balance: auto}",
    )
    logging: list[str | dict[str, dict[str, Any]]] = field(
        [], doc="loggers besides the console and run_dir/log.jsonl: a name, or {name: {arg: value}}"
    )

    def check(self, path: str) -> None:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(
                f"device: {self.device!r} is not a device prunekit runs on; valid: auto, cpu, cuda, cuda:N"
            )
        if not -(2**63) <= self.seed < 2**63:
            raise ConfigError(f"seed: {self.seed} does not fit in 64 bits; give a seed from -2**63 to 2**63 - 1")
        if not self.run_dir.strip():
            raise ConfigError("run_dir: an empty path names no folder; give one, e.g. runs/my-run")
        for i, entry in enumerate(self.logging):
            if isinstance(entry, dict) and len(entry) != 1:
                raise ConfigError(
                    f"logging[{i}]: {entry!r} must name one logger, e.g. {{csv: {{filename: steps.csv}}}}"
                )

    def loggers(self) -> list[tuple[str, dict[str, Any]]]:
        """``logging`` as (logger name, arguments) pairs."""
        return [(e, {}) if isinstance(e, str) else next(iter(e.items())) for e in self.logging]

    def cost_functions(self) -> CostFunctions:
        """The config's cost functions, imported (found also beside the config file)."""
        return CostFunctions.of(self.cost.overrides, self.cost.param_overrides, self.plugins.search)

    def manager(self) -> Manager:
        """The plugin manager for this config's ``plugins`` section."""
        p = self.plugins
        return for_settings(p.load, p.disable, p.autoload, p.search)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def load_config(
    source: str | Path | dict[str, Any] | None = None,
    plugins: Manager | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Config:
    """A validated :class:`Config` from a YAML file or a dict, with ``settings`` (dotted keys, as
    ``--set pruning.prune_away_percent=30`` gives them) over what it says.

    The ``pruning.preset`` is resolved with ``plugins`` (default: a manager for the config's own
    ``plugins`` section); its settings sit beneath the config's (see :func:`beneath`). Every
    plugin the config names, and its arguments where the plugin declares them, is checked here.
    """
    data = shorthand(with_settings(read_source(source), settings or {}))
    if isinstance(source, (str, Path)) and isinstance(data.get("plugins", {}), dict):
        plugins_section = data.get("plugins", {})
        if "search" not in plugins_section:  # the config's folder: its plugin files and modules
            data = {**data, "plugins": {**plugins_section, "search": [str(Path(source).resolve().parent)]}}
    config = build(Config, data)
    manager = plugins or config.manager()
    preset = config.pruning.preset
    if preset is not None:
        fragment = manager.get("preset", preset)
        if not isinstance(fragment, dict):
            raise ConfigError(f"pruning.preset: {preset!r} gave {type(fragment).__name__}, not a mapping of settings")
        pruning = data.get("pruning")
        config = build(Config, {**data, "pruning": beneath(fragment, pruning if isinstance(pruning, dict) else {})})
    check_names(config, manager)
    return config


def check_names(config: Config, plugins: Manager) -> None:
    """Every plugin the config names exists, and its arguments fit what it declares."""
    named: list[tuple[str, str, str | None, dict[str, Any]]] = [
        ("model", "model", config.model.name, config.model.args),
        ("dataset", "data", config.data.name, config.data.args),
        ("task", "task", config.task, {}),
    ]
    named += [("task_loss", f"loss.{n}", n, t.args) for n, t in config.loss.items()]
    named += [("distillation", f"distillation.{n}", n, t.args) for n, t in config.distillation.items()]
    criterion = config.pruning.criterion
    named += [("criterion", f"pruning.criterion.weights.{n}", n, criterion.args.get(n, {})) for n in criterion.weights]
    named += [("logger", f"logging.{n}", n, args) for n, args in config.loggers()]
    named.append(("runtime", "pruning.runtime", config.pruning.runtime, {}))
    compared = config.pruning.compare_runtimes
    named += [("runtime", "pruning.compare_runtimes", n, {}) for n in (compared if compared != "all" else [])]
    for kind, path, name, args in named:
        if name is None:
            continue
        try:
            plugins.spec(kind, name)
        except PluginError as exc:
            raise PluginError(f"{path}: {exc}") from None
        plugins.arguments(kind, name, args, path if kind == "logger" else f"{path}.args")
    config.cost_functions()
    known = plugins.approximations()
    for name in config.pruning.approximate:
        if name not in known:
            raise ConfigError(f"pruning.approximate: unknown approximation {name!r}; {suggest(name, known)}")
    for name in criterion.args:
        if name not in criterion.weights:
            raise ConfigError(
                f"pruning.criterion.args.{name}: no criterion {name!r} in weights; {suggest(name, criterion.weights)}"
            )


def demo_text() -> str:
    """The built-in demo config, as YAML text."""
    return resources.files("prunekit.run").joinpath("demo.yaml").read_text()
