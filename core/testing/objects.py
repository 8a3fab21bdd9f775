"""Checking criteria, distillation losses, datasets, loggers and runtimes against their contracts."""

from __future__ import annotations

import copy
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cost.latency import measure_rounds
from ..graph import ChannelGraph, sample, trace
from ..modes import eval_mode
from ..plugin.manager import Manager
from ..pruning import calibrate, group_scores, remove, scored_layers
from ..records import DataSplits, Outputs, as_batch
from .contract import close_enough, require


def _small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()


def check_criterion(
    factory: Callable[[], Any],
    model: nn.Module | None = None,
    example_input: torch.Tensor | None = None,
    plugins: Manager | None = None,
) -> None:
    """A criterion's contract: what it ``needs``, one finite score per output channel of each
    layer it scores, statistics that ``reset()`` clears and whose order of batches does not matter."""
    model = model or _small_model()
    x = (
        example_input
        if example_input is not None
        else torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    )
    graph = trace(model, x[:1], plugins=plugins)
    criterion = factory()
    needs = set(getattr(criterion, "needs", ()))
    require(
        needs <= {"weights", "activations", "gradients"}, f"needs {sorted(needs)}: only weights, activations, gradients"
    )
    halves = [x[: len(x) // 2], x[len(x) // 2 :]]
    loss = _self_loss if "gradients" in needs else None
    first = _scores(criterion, model, graph, halves, loss)
    second = _scores(criterion, model, graph, halves[::-1], loss)  # reset, then the same batches the other way round
    require(bool(first), "the criterion scored no layer")
    for layer, values in first.items():
        expected = graph.layers[layer].channels("out")
        require(len(values) == expected, f"{len(values)} scores for layer {layer!r}, which has {expected} channels")
        require(bool(torch.isfinite(values).all()), f"scores of layer {layer!r} are not finite")
        close_enough(
            values.double(), second[layer].double(), f"scores of {layer!r} after reset() and the batches reversed"
        )
    group_scores(graph, {"checked": (criterion, 1.0)})


def _self_loss(logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    return logits.pow(2).mean()


def _scores(
    criterion: Any, model: nn.Module, graph: ChannelGraph, batches: list[torch.Tensor], loss: Any
) -> dict[str, torch.Tensor]:
    calibrate(
        model, graph, {"checked": criterion}, [{"image": b, "target": b} for b in batches], loss=loss, progress=False
    )  # resets the criterion first
    out = {}
    for layer in scored_layers(graph):
        score = criterion.score(layer)
        if score is not None:
            out[layer.name] = torch.as_tensor(score).detach().flatten()
    return out


def check_distillation(
    factory: Callable[[], nn.Module],
    student: nn.Module | None = None,
    teacher: nn.Module | None = None,
    example_input: torch.Tensor | None = None,
    taps: tuple[str, ...] = ("0", "2"),
) -> None:
    """A distillation loss's contract: a finite scalar whose gradient reaches the student and
    never the teacher, teacher outputs untouched, and (with ``setup``) students whose tapped
    channel counts pruning made differ from the teacher's."""
    teacher = teacher or _small_model()
    x = (
        example_input
        if example_input is not None
        else torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    )
    student = student or _narrower(teacher, x[:1])
    loss = factory()
    declared = getattr(loss, "taps", None)
    paths = taps if declared is None else tuple(declared)
    s_out, t_out = _tapped(student, x, paths, grad=True), _tapped(teacher, x, paths, grad=False)
    frozen = {k: v.clone() for k, v in [("logits", t_out.logits), *t_out.features.items()]}
    setup = getattr(loss, "setup", None)
    if setup is not None:
        setup(s_out, t_out)
    value = loss(s_out, t_out)
    require(torch.is_tensor(value) and value.dim() == 0, f"the loss is {type(value).__name__}, not a scalar tensor")
    require(bool(torch.isfinite(value)), f"the loss is {value.item()}")
    value.backward()
    require(
        any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters()),
        "no gradient reaches the student",
    )
    require(all(p.grad is None for p in teacher.parameters()), "a gradient reaches the teacher")
    for key, tensor in [("logits", t_out.logits), *t_out.features.items()]:
        require(torch.equal(tensor, frozen[key]), f"the loss changed the teacher's {key!r} in place")


def _narrower(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """The same model with a quarter of its channels pruned away."""
    narrow = copy.deepcopy(model).train()
    check = trace(narrow, x)
    rng = random.Random(0)
    removal = {g.id: chosen for g in check.groups if len(g.prunable) > 1 and (chosen := sample(g, 0.25, rng))}
    remove(narrow, check, removal)
    return narrow


def _tapped(model: nn.Module, x: torch.Tensor, paths: tuple[str, ...], grad: bool) -> Outputs:
    features: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = [modules[p].register_forward_hook(lambda m, a, o, p=p: features.__setitem__(p, o)) for p in paths]
    try:
        with torch.set_grad_enabled(grad), eval_mode(model):
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return Outputs(logits, features)


def check_dataset(splits: DataSplits, samples: int = 4) -> None:
    """A dataset's contract: non-empty training data; items that collate into ``image`` (C×… float,
    C = ``in_channels``) and ``target`` (class indices below ``n_classes``); the same item twice."""
    require(isinstance(splits, DataSplits), f"the dataset built {type(splits).__name__}, not DataSplits")
    require(len(splits.train) > 0, "no training samples")
    require(
        not splits.class_names or len(splits.class_names) == splits.n_classes,
        f"{len(splits.class_names)} class names for {splits.n_classes} classes",
    )
    for name, split in (("train", splits.train), ("val", splits.val)):
        if split is None:
            continue
        for index in range(min(samples, len(split))):
            batch = as_batch(torch.utils.data.default_collate([split[index]]))
            image, target = batch["image"], batch["target"]
            require(image.is_floating_point(), f"{name}[{index}]: the image is {image.dtype}, not floating point")
            require(
                image.shape[1] == splits.in_channels,
                f"{name}[{index}]: {image.shape[1]} image channels, the dataset says {splits.in_channels}",
            )
            valid = target[(target >= 0) & (target < 255)]
            require(bool((valid < splits.n_classes).all()), f"{name}[{index}]: a target class is >= {splits.n_classes}")
            again = as_batch(torch.utils.data.default_collate([split[index]]))
            require(
                torch.equal(again["image"], image) and torch.equal(again["target"], target),
                f"{name}[{index}] differs when read twice",
            )


def check_logger(factory: Callable[[Path], Any]) -> None:
    """A logger's contract: it takes every kind of record prunekit sends, closes, and writes only
    inside the run directory it is given."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_dir = root / "run"
        run_dir.mkdir()
        logger = factory(run_dir)
        for record in _records():
            logger.log(record)
        logger.close()
        outside = [p.name for p in root.iterdir() if p != run_dir]
        require(not outside, f"the logger wrote outside the run directory: {outside}")


def _records() -> Iterator[dict[str, Any]]:
    yield {"event": "epoch", "phase": "train", "epoch": 1, "loss": 0.5, "lr": 1e-3, "miou": 0.4}
    for step in (1, 2):
        yield {
            "event": "step",
            "step": step,
            "macs": 100 - step,
            "params": 10,
            "macs_percent": 90.0,
            "params_percent": 80.0,
            "removed": 3,
            "at_limit": 0,
            "seconds": 0.1,
            "miou": 0.5,
        }
    yield {"event": "stop", "step": 3, "message": "nothing more can be removed"}
    yield {"event": "summary", "macs": 98, "params": 10, "macs_percent": 98.0, "params_percent": 100.0}


def check_runtime(runtime: Any, device: torch.device | str = "cpu") -> None:
    """A runtime's contract: a name, whether it times single layers, and — where ``available``
    says it runs on ``device`` — a version, a positive channel multiple, and prepared calls that
    run a model (a convolution, a norm, an activation and a concatenation) again and again, timed
    in turns."""
    device = torch.device(device)
    require(isinstance(getattr(runtime, "name", None), str) and bool(runtime.name), "a runtime needs a name")
    require(isinstance(getattr(runtime, "times_layers", None), bool), "times_layers must be True or False")
    why = runtime.available(device)
    require(why is None or (isinstance(why, str) and "\n" not in why), f"available() gave {why!r}: None or one line")
    if why is not None:
        return
    require(isinstance(runtime.version(), str) and bool(runtime.version()), "version() must name the version")
    align = runtime.alignment(device)
    require(isinstance(align, int) and align >= 1, f"alignment() gave {align!r}, not a channel multiple >= 1")
    model, x = _Joined().to(device).eval(), torch.randn(1, 3, 8, 8, device=device)
    call = runtime.prepare(model, x)
    require(callable(call), "prepare() must return a callable that runs one forward")
    call()
    measure_rounds([model, model], x, repeats=2, runtime=runtime)  # prepared again, timed in turns


class _Joined(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.norm(self.conv(x)).relu(), x], dim=1)
