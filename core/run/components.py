"""The objects a run is made of, built from its config by the plugins it names: the model, the
data, the task, the training objective, the criteria and the loggers."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cost.cost_model import CostModel
from ..cost.counting import count
from ..cost.runtimes import runtime_named
from ..errors import ConfigError, DataError, PluginError, PrunekitError, one_line, suggest
from ..graph.channel_graph import Group, trace
from ..graph.overrides import CostFunctions, Overrides
from ..imports import import_callable, weight_arguments
from ..plugin.manager import Manager
from ..plugin.protocols import Task
from ..pruning.ranking import build_criteria, default_mix
from ..records import DataSplits
from ..schema import convert
from ..training.data import LoaderData, SplitData, TrainingData
from ..training.trainer import Objective, Trainer
from .config import Config, LossTerm, ModelConfig
from .config_source import shorthand
from .fingerprint import data_print, loss_print, model_print
from .preflight import Naming, check_model, classes_of, naming_of, preflight
from .storage.weights import load_into, load_weights


def build_model(cfg: ModelConfig, plugins: Manager, search: Iterable[str] = ()) -> nn.Module:
    """The model a config names: a registered builder or a factory by import path (found also in
    the ``search`` folders)."""
    if cfg.factory is not None:
        factory = import_callable(cfg.factory, "model.factory", search)
        _offline(factory, cfg.args, f"model.factory {cfg.factory!r}")
        model = _built(factory, cfg.args, f"model.factory {cfg.factory!r}")
    elif cfg.name is not None:
        model = plugins.get("model", cfg.name, **cfg.args)
    else:
        raise ConfigError(f"model: give a name or a factory; registered models: {', '.join(plugins.names('model'))}")
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: the builder returned {type(model).__name__}, not an nn.Module")
    return model


def start_weights(model: nn.Module, cfg: ModelConfig) -> str:
    """Load ``model.checkpoint`` (if any) into ``model``, as strictly as ``model.strict`` says;
    returns a line on the tensors that did not match ("" when all did)."""
    if cfg.checkpoint is None:
        return ""
    source = f"model.checkpoint {cfg.checkpoint!r}"
    return load_into(model, load_weights(Path(cfg.checkpoint)), source, cfg.strict)


def _offline(factory: Any, args: dict[str, Any], what: str) -> None:
    """Refuse a factory argument that would load weights — ``weights*`` or ``pretrained*``, given or
    by default, neither null nor false: prunekit downloads nothing (a zoo's default ImageNet
    backbone included); weights come from a local ``model.checkpoint``."""
    for name, default in weight_arguments(factory).items():
        value = args.get(name, default)
        if value not in (None, False, inspect.Parameter.empty):
            raise ConfigError(
                f"{what}: {name} is {value!r}{' by default' if name not in args else ''}, which loads weights, "
                f"and prunekit downloads nothing at run time; set model.args.{name}: null (false) and start from "
                "a local file: model.checkpoint: path/to/weights"
            )


def _built(factory: Any, args: dict[str, Any], what: str) -> Any:
    try:
        return factory(**args)
    except PrunekitError:
        raise
    except TypeError as exc:
        raise ConfigError(f"{what}: bad arguments {args} ({exc})") from None
    except Exception as exc:  # the builder refused its arguments in its own way
        raise ConfigError(f"{what} failed with arguments {args} ({one_line(exc)})") from None


def build_data(config: Config, plugins: Manager) -> SplitData | tuple[Any, Any]:
    """The config's data: a registered dataset, or ``data.factory``'s ``DataSplits`` or
    ``(train, val)`` iterables of batches."""
    cfg = config.data
    if cfg.factory is not None:
        splits = _built(import_callable(cfg.factory, "data.factory", config.plugins.search), cfg.args, "data.factory")
        source = f"data.factory {cfg.factory!r}"
        if isinstance(splits, tuple) and len(splits) == 2 and not isinstance(splits, DataSplits):
            return splits
    elif cfg.name is not None:
        splits, source = plugins.get("dataset", cfg.name, **cfg.args), f"dataset {cfg.name!r}"
    else:
        raise ConfigError(f"data: give a name or a factory; registered datasets: {', '.join(plugins.names('dataset'))}")
    if not isinstance(splits, DataSplits):
        raise DataError(f"{source} returned {type(splits).__name__}, not DataSplits or (train, val)")
    if len(splits.train) == 0:
        raise DataError(f"{source} has no training samples")
    return SplitData(splits, cfg.batch_size, cfg.num_workers)


def resolve_task(name: str | None, dataset_task: str | None, plugins: Manager) -> Task:
    """The config's task, else the one the dataset names."""
    chosen = name or dataset_task
    if chosen is None:
        raise ConfigError(
            f"task: the dataset names no task, so the config must; registered: {', '.join(plugins.names('task'))}"
        )
    task = plugins.get("task", chosen)
    if not isinstance(task, Task):
        raise PluginError(
            f"task {chosen!r} does not offer what a task must (name, best_metric, best_label, "
            "default_loss, metric(), report_rows())"
        )
    return task


def build_objective(config: Config, task: Task, plugins: Manager) -> Objective:
    """Task losses (the task's defaults when the config names none), their schedule, and the
    distillation losses, built afresh for every phase."""
    loss = config.loss or convert(
        dict[str, LossTerm], shorthand({"loss": task.default_loss})["loss"], f"the default loss of task {task.name!r}"
    )
    terms = {name: (t.weight, t.args) for name, t in loss.items()}
    for name in config.loss_schedule.ramp:
        if name not in terms:
            raise ConfigError(f"loss_schedule.ramp: {name!r} is not one of the task losses; {suggest(name, terms)}")
    losses = {name: (plugins.get("task_loss", name, **args), weight) for name, (weight, args) in terms.items()}

    def distillation() -> dict[str, tuple[nn.Module, float]]:
        return {n: (plugins.get("distillation", n, **t.args), t.weight) for n, t in config.distillation.items()}

    return Objective(losses, config.loss_schedule, distillation, config.distillation_balance)


@dataclass
class GivenObjects:
    """What a Python caller hands over instead of the config's names: a model, data (any
    iterables of batches, such as DataLoaders), a loss ``loss(logits, target)`` and an example
    input. Each one given replaces what the config would build."""

    model: nn.Module | None = None
    train: Iterable[Any] | None = None
    val: Iterable[Any] | None = None
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    example_input: torch.Tensor | None = None
    overrides: Overrides | None = None
    param_overrides: Overrides | None = None

    def __post_init__(self) -> None:
        if self.model is not None:
            check_model(self.model)
        for name in ("train", "val"):
            _reusable(getattr(self, name), f"{name}=")
        if self.loss is not None and not callable(self.loss):
            raise ConfigError(f"loss=: a function loss(logits, target) is needed, not {type(self.loss).__name__}")

    def cost_functions(self, config: Config) -> CostFunctions:
        """The cost functions: those given, else the config's (MACs and parameters each)."""
        given = CostFunctions.of(self.overrides, self.param_overrides)
        if self.overrides is not None and self.param_overrides is not None:
            return given
        own = config.cost_functions()
        return CostFunctions(
            given.macs if self.overrides is not None else own.macs,
            given.params if self.param_overrides is not None else own.params,
        )

    def model_builder(self, config: Config, plugins: Manager) -> Callable[[], nn.Module]:
        """Builds the model afresh: a copy of the given one (left untouched), or the config's."""
        given = self.model
        if given is not None:
            return lambda: copy.deepcopy(given)
        return lambda: build_model(config.model, plugins, config.plugins.search)

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must be given again: hashes of the model's weights, the first
        sample of each dataset and the loss's settings, and the cost functions' names."""
        out: dict[str, Any] = model_print(self.model) if self.model is not None else {}
        for name in ("train", "val"):
            data = getattr(self, name)
            if data is not None:
                out[name] = data_print(data)
        if self.loss is not None:
            out["loss"] = f"{_name(self.loss)} {loss_print(self.loss)}"
        for name in ("overrides", "param_overrides"):
            functions = getattr(self, name)
            if functions is not None:
                out[name] = {_name(key): _name(fn) for key, fn in functions.items()}
        return out


def _name(obj: Any) -> str:
    return obj if isinstance(obj, str) else getattr(obj, "__qualname__", type(obj).__qualname__)


def _reusable(data: Any, what: str) -> None:
    if isinstance(data, Iterator):
        raise DataError(
            f"{what} is a one-shot iterator ({type(data).__name__}), used up after one epoch; give data that "
            "can be iterated again, such as a DataLoader or a list of batches"
        )


def naming(config: Config, plugins: Manager, objects: GivenObjects) -> Naming:
    """How the preflight names the run's data, and the config settings it suggests."""

    def arg_names(kind: str, name: str | None) -> set[str]:
        args = plugins.spec(kind, name).args if name else None
        return {f.name for f in dataclasses.fields(args)} if dataclasses.is_dataclass(args) else set()

    model = arg_names("model", config.model.name) if objects.model is None and not config.model.factory else set()
    given = objects.train is not None or objects.val is not None
    dataset = arg_names("dataset", config.data.name) if not (given or config.data.factory) else set()
    return naming_of(config.data.name, config.data.factory, given, {"model": model, "dataset": dataset})


def build_trainer(
    config: Config, plugins: Manager, device: torch.device, progress: bool = True, objects: GivenObjects | None = None
) -> Trainer:
    """A trainer (without a teacher) for the run's data, task and losses — the config's, or the
    objects given: what a baseline is trained with, and what benchmarks retrain other tools'
    models with."""
    objects = objects or GivenObjects()
    data: SplitData | LoaderData
    built = build_data(config, plugins) if objects.train is None and objects.val is None else None
    if isinstance(built, SplitData):
        data, task = built, resolve_task(config.task, built.splits.task, plugins)
    else:
        train, val = built or (objects.train, objects.val)
        _reusable(train, "the training data")
        _reusable(val, "the validation data")
        if config.task is None:
            raise ConfigError(
                f"task: data given as objects does not say its task; give one: {', '.join(plugins.names('task'))}"
            )
        data = LoaderData(train, val, _classes(objects, config, plugins, LoaderData(train, val, 0)))
        task = resolve_task(config.task, None, plugins)
    objective = build_objective(config, task, plugins)
    if objects.loss is not None:
        given = objects.loss
        objective.task_losses = {"loss": (lambda logits, batch: given(logits, batch["target"]), 1.0)}
    return Trainer(objective, data, task, device, progress=progress)


def _classes(objects: GivenObjects, config: Config, plugins: Manager, data: LoaderData) -> int:
    """The model's number of classes: the size of dim 1 of its output on one batch."""
    model = objects.model_builder(config, plugins)()
    example = objects.example_input
    if example is None:
        example = data.example()
    return classes_of(model, example, naming(config, plugins, objects))


def build_loggers(config: Config, run_dir: Path, plugins: Manager) -> list[Any]:
    return [plugins.create("logger", name, (run_dir,), args, f"logging.{name}") for name, args in config.loggers()]


def example_input(config: Config, objects: GivenObjects, data: TrainingData) -> torch.Tensor:
    """The input a run traces and counts on: the one given, the config's size, or one batch item."""
    if objects.example_input is not None:
        return objects.example_input
    return torch.zeros(config.input_size) if config.input_size else data.example()


def check_costs(
    config: Config, cost_functions: CostFunctions, plugins: Manager, model: nn.Module, example: Any
) -> None:
    """Count the untrained model, and with your cost functions predict it with half and with all
    but one of every group's channels removed: a cost function that fails (at once, or only at
    the smaller counts pruning reaches), or a budget in a resource the model does not have, stops
    the run before anything is written or trained."""
    p = config.pruning
    include = config.cost.include or None
    original = count(model, example, cost_functions, include, plugins=plugins)
    if cost_functions:
        graph = trace(model, example, p.protected, cost_functions, plugins=plugins, approximate=p.approximate)
        cost = CostModel(graph, include)
        for share in (0.5, 1.0):
            cost.predict({g.id: _smaller(g, share) for g in graph.groups})
    if p.target_speedup is None and p.resource in ("macs", "params") and not getattr(original, p.resource):
        raise ConfigError(
            f"pruning.resource: the model costs 0 {p.resource} as counted (cost.include, cost.overrides), "
            "so a budget in them removes nothing; count another resource or give a target_speedup"
        )


def retrain_function(config: Config) -> Callable[[Any], Any] | None:
    """``retrain.function`` imported and checked to take the step as its one argument, or ``None``."""
    retrain = config.retrain
    if retrain == "none" or not retrain.function:
        return None
    function = import_callable(retrain.function, "retrain.function", config.plugins.search)
    try:
        inspect.signature(function).bind(object())
    except TypeError as exc:
        raise ConfigError(
            f"retrain.function {retrain.function!r} cannot be called with the step alone ({exc}); it must take "
            "one argument, the PrunedStep"
        ) from None
    except ValueError:  # a builtin without a signature: it will say so when called
        pass
    return function


def _smaller(group: Group, share: float) -> list[int]:
    """``share`` of the group's prunable channels, leaving it one channel at least."""
    room = group.prunable if len(group.prunable) < group.channels else group.prunable[1:]
    return room[: int(len(room) * share)]


def with_task_criterion(config: Config, task: Task) -> Config:
    """The config with the criterion mix its run ranks by: its own, or where it names none, the task's."""
    criterion = default_mix(config.pruning.criterion, task)
    return dataclasses.replace(config, pruning=dataclasses.replace(config.pruning, criterion=criterion))


def checked_trainer(
    config: Config,
    plugins: Manager,
    device: torch.device | None = None,
    progress: bool = False,
    objects: GivenObjects | None = None,
    cost_functions: CostFunctions | None = None,
) -> Trainer:
    """Build everything the run needs — model, data, task, losses, distillation, criteria — count
    the model with the config's cost functions and look up its loggers and runtimes, so that a bad
    name, argument or function, or a runtime that cannot run here, fails before anything is
    written or trained. Returns the trainer, which a run goes on to use."""
    objects = objects or GivenObjects()
    device = device or torch.device("cpu")
    with torch.random.fork_rng(devices=[]):  # building to check must not change what the run draws
        trainer = build_trainer(config, plugins, device, progress, objects)
        model = objects.model_builder(config, plugins)()
        if report := start_weights(model, config.model):
            warnings.warn(report, RuntimeWarning, stacklevel=2)
        data = trainer.data
        train = data.train_batches(None) if data.has_train else None
        preflight(
            model,
            train,
            data.val_batches(),
            trainer.objective,
            data.n_classes,
            device,
            naming(config, plugins, objects),
        )
        check_costs(
            config,
            cost_functions or objects.cost_functions(config),
            plugins,
            model,
            example_input(config, objects, trainer.data),
        )
        build_criteria(default_mix(config.pruning.criterion, trainer.task), plugins)
        trainer.objective.distillation()
        retrain_function(config)
    for name, _ in config.loggers():
        plugins.spec("logger", name)
    compared = config.pruning.compare_runtimes
    for name in [config.pruning.runtime, *(compared if compared != "all" else [])]:
        runtime_named(name, plugins, device)
    return trainer
