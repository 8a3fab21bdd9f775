"""One batch of training and validation data through the model and the loss, before a run claims
its folder or trains anything: a model and data that disagree end in one line naming both sides,
not in a traceback from the middle of a forward."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, DataError, PrunekitError, one_line
from ..modes import eval_mode
from ..records import to_device
from ..training.trainer import Objective


@dataclass
class Naming:
    """How to name the two sides in a message: where the data comes from, and what to change
    ("set data.args.channels: 3") where the config has such a setting."""

    data: str = "the data"
    channels_hint: str = ""
    classes_hint: str = ""

    def channels(self, model_takes: int, data_has: int) -> str:
        return self.channels_hint.format(model=model_takes, data=data_has)

    def classes(self, model_gives: int, data_has: int) -> str:
        return self.classes_hint.format(model=model_gives, data=data_has)


def check_model(model: Any) -> nn.Module:
    """A model prunekit can trace and cut: a module whose weights hold values."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: a torch.nn.Module is needed, not {type(model).__name__}")
    meta = next((n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta), None)
    if meta is not None:
        raise ConfigError(
            f"model: {meta!r} is on the meta device (it has a shape but no values); load or initialise "
            "the weights first, e.g. model.to_empty(device='cpu') and load_state_dict(...)"
        )
    return model


def logits_of(output: Any) -> torch.Tensor:
    """The model's output as the tensor of class scores every loss and metric reads."""
    if not torch.is_tensor(output):
        shown = f"a dict with {sorted(map(str, output))}" if isinstance(output, dict) else f"a {type(output).__name__}"
        raise ConfigError(
            f"the model's forward returns {shown}, not a tensor of class scores; return the logits "
            "(e.g. out['out'] or out[0]) from forward, or wrap the model in a module that does"
        )
    return output


def preflight(
    model: nn.Module,
    train: Iterable[dict[str, Any]] | None,
    val: Iterable[dict[str, Any]] | None,
    objective: Objective,
    n_classes: int,
    device: torch.device,
    sides: Naming,
) -> None:
    """Run the first batch of ``train`` (forward and task loss) and of ``val`` (forward) through a
    copy of ``model`` on ``device``; raise :class:`DataError` / :class:`ConfigError` on the first
    disagreement."""
    model = copy.deepcopy(check_model(model)).to(device)
    for split, batches in (("training", train), ("validation", val)):
        if batches is None:
            continue
        batch = to_device(_first(batches, f"{sides.data} ({split})"), device)
        _check_image(model, batch["image"], sides)
        with eval_mode(model), torch.set_grad_enabled(split == "training"):
            logits = _forward(model, batch["image"])
            _check_targets(logits, batch["target"], n_classes, sides)
            if split == "training":
                _check_loss(objective, logits, batch)


def _first(batches: Iterable[Any], what: str) -> dict[str, Any]:
    try:
        batch = next(iter(batches), None)
    except PrunekitError:
        raise
    except Exception as exc:
        raise DataError(f"{what}: reading the first batch failed: {one_line(exc)}") from exc
    if batch is None:
        raise DataError(f"{what} yields no batch; give data with at least one batch, or none at all")
    return batch


def _check_image(model: nn.Module, image: Any, sides: Naming) -> None:
    if not torch.is_tensor(image):
        raise DataError(f"{sides.data} yields images of type {type(image).__name__}, not tensors")
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    if weight is not None and image.dtype != weight.dtype:
        fix = f"convert them (e.g. image.to(torch.{_name(weight.dtype)}){' / 255' * (not image.is_floating_point())})"
        raise DataError(
            f"{sides.data} yields {_name(image.dtype)} images; the model's weights are {_name(weight.dtype)}: {fix}"
        )
    name, first = _first_layer(model, image) or ("", None)
    takes = getattr(first, "in_channels", None)
    if isinstance(takes, int) and image.dim() >= 2 and image.shape[1] != takes:
        raise DataError(
            f"the model's first layer ({name}) takes {takes} channels; {sides.data} yields "
            f"{image.shape[1]}{sides.channels(takes, image.shape[1])}"
        )


def _first_layer(model: nn.Module, image: torch.Tensor) -> tuple[str, nn.Module] | None:
    """The first module with weights that the forward reaches (the forward stops right there)."""
    found: list[tuple[str, nn.Module]] = []

    class Reached(Exception):
        pass

    def stop(module: nn.Module, args: Any) -> None:
        found.append((names[module], module))
        raise Reached

    names = {m: n for n, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None}
    hooks = [m.register_forward_pre_hook(stop) for m in names]
    try:
        with torch.no_grad(), eval_mode(model):
            model(image)
    except Exception:  # Reached, or a failure before any layer: the forward check says which
        pass
    finally:
        for hook in hooks:
            hook.remove()
    return found[0] if found else None


def _forward(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    try:
        output = model(image)
    except PrunekitError:
        raise
    except Exception as exc:
        raise DataError(
            f"the model's forward fails on a batch of images {tuple(image.shape)} ({_name(image.dtype)}): "
            f"{one_line(exc)}"
        ) from exc
    return logits_of(output)


def _check_targets(logits: torch.Tensor, target: Any, n_classes: int, sides: Naming) -> None:
    if not torch.is_tensor(target):
        raise DataError(f"{sides.data} yields targets of type {type(target).__name__}, not tensors")
    if logits.dim() >= 2 and logits.shape[1] != n_classes:
        raise DataError(
            f"the model outputs {logits.shape[1]} classes; {sides.data} has {n_classes}"
            f"{sides.classes(logits.shape[1], n_classes)}"
        )
    if target.is_floating_point():
        if target.dim() + 1 != logits.dim():
            return  # scores of the output's own shape (soft labels): the loss judges them
        raise DataError(
            f"{sides.data} yields {_name(target.dtype)} targets; class indices must be integers (target.long())"
        )
    if (logits.shape[0], *logits.shape[2:]) != tuple(target.shape):
        raise DataError(
            f"the model's output is {tuple(logits.shape)} but the targets of {sides.data} are {tuple(target.shape)}; "
            "the output needs the targets' size with a class dimension (N×C×… for N×… targets)"
        )
    low, high = int(target.min()), int(target.max())
    if low < 0 or high >= logits.shape[1]:
        raise DataError(
            f"{sides.data} yields class {low if low < 0 else high}, but the model outputs {logits.shape[1]} "
            f"classes (0 to {logits.shape[1] - 1})"
        )


def _check_loss(objective: Objective, logits: torch.Tensor, batch: dict[str, Any]) -> None:
    for name, (loss, _) in objective.task_losses.items():
        try:
            value = loss(logits.float(), batch)
        except PrunekitError:
            raise
        except Exception as exc:
            raise ConfigError(f"the loss {name!r} fails on the first training batch: {one_line(exc)}") from exc
        if not torch.is_tensor(value) or value.dim() != 0:
            shown = f"a tensor of shape {tuple(value.shape)}" if torch.is_tensor(value) else type(value).__name__
            raise ConfigError(f"the loss {name!r} returns {shown}; it must return a scalar tensor (e.g. .mean())")
        if not torch.isfinite(value):
            raise DataError(f"the loss {name!r} is {float(value.detach())} on the first training batch; check the data")
        if not value.requires_grad:
            raise ConfigError(
                f"the loss {name!r} does not depend on the model's output (no gradient flows back through it)"
            )


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def classes_of(model: nn.Module, example: torch.Tensor, sides: Naming) -> int:
    """The number of classes ``model`` outputs for ``example`` (the size of the output's dim 1)."""
    _check_image(model, example, sides)
    with torch.no_grad(), eval_mode(model):
        logits = _forward(model, example)
    if logits.dim() < 2:
        raise DataError(f"the model's output {tuple(logits.shape)} has no class dimension (N×C×…)")
    return int(logits.shape[1])


def naming_of(data_name: str | None, data_factory: str | None, given: bool, arg_names: dict[str, set[str]]) -> Naming:
    """How messages name the data and what they suggest: ``arg_names`` holds the argument names
    of the config's registered ``model`` and ``dataset`` (empty where there is none)."""
    if given:
        return Naming("the data given (train=, val=)")
    data = f"data.factory {data_factory!r}" if data_factory else f"data {data_name!r}"
    fixes = ["set data.args.channels: {model}"] * ("channels" in arg_names.get("dataset", set()))
    fixes += ["set model.args.in_channels: {data}"] * ("in_channels" in arg_names.get("model", set()))
    channels = " — " + " or ".join(fixes) if fixes else ""
    classes = " — set model.args.n_classes: {data}" if "n_classes" in arg_names.get("model", set()) else ""
    return Naming(data, channels, classes)
