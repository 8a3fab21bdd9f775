"""Models of the common zoos, by name — ``torchvision.<name>``, ``timm.<name>``, ``smp.<Arch>`` —
registered where that package imports, built without pretrained weights unless asked for (nothing
is downloaded at run time).

Importing the three zoos takes seconds, so the names each offers are kept in prunekit's cache
per package and torch version: a process imports a zoo only when it builds one of its models
(or the first time a version is seen). Their channels-first ``LayerNorm2d`` classes are layer
types of the built-in layer-type plugin, by import path.

Examples: ``model: {name: torchvision.resnet18, args: {num_classes: 10}}``,
``{name: timm.efficientnet_b0, args: {num_classes: 4}}``,
``{name: smp.Unet, args: {encoder_name: resnet18, classes: 4, in_channels: 1}}``.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable
from importlib import metadata
from typing import Any

import torch
from torch import nn

from prunekit.plugin import ConfigError, Spec, StorageError, atomic_write_text, cache_dir, hookimpl, weight_arguments


def _offline(model: str, args: dict[str, Any], arg: str, off: Any) -> None:
    """Refuse an argument that would download weights: nothing is fetched at run time."""
    value = args.setdefault(arg, off)
    if value is not off and value is not False:
        raise ConfigError(
            f"model {model}: {arg}: {value!r} downloads weights, and prunekit downloads nothing at run time; "
            "start from a local file: model.checkpoint: path/to/weights (a torch.save'd state_dict, "
            ".safetensors or a Lightning .ckpt; model.strict: false where the head differs)"
        )


def _torchvision(name: str, **args: Any) -> nn.Module:
    from torchvision import models

    builder = models.get_model_builder(name)
    # every argument that loads weights, the backbone's too (segmentation and detection models
    # default weights_backbone to ImageNet weights)
    for arg in dict.fromkeys(["weights", *weight_arguments(builder)]):
        _offline(f"torchvision.{name}", args, arg, False if arg.startswith("pretrained") else None)
    return builder(**args)


def _timm(name: str, **args: Any) -> nn.Module:
    _offline(f"timm.{name}", args, "pretrained", False)
    import timm

    return timm.create_model(name, **args)


def _smp(arch: str, **args: Any) -> nn.Module:
    _offline(f"smp.{arch}", args, "encoder_weights", None)
    import segmentation_models_pytorch as smp

    return getattr(smp, arch)(**args)


SMP_ARCHITECTURES = (
    "Unet",
    "UnetPlusPlus",
    "MAnet",
    "Linknet",
    "FPN",
    "PSPNet",
    "DeepLabV3",
    "DeepLabV3Plus",
    "PAN",
    "UPerNet",
    "Segformer",
)


def _list_torchvision() -> list[str]:
    from torchvision import models

    return list(models.list_models())


def _list_timm() -> list[str]:
    import timm

    return list(timm.list_models())


def _list_smp() -> list[str]:
    import segmentation_models_pytorch as smp

    return [a for a in SMP_ARCHITECTURES if hasattr(smp, a)]


#: zoo -> (its distribution, the prefix of its model names, what lists them, what builds one)
ZOOS: dict[str, tuple[str, str, Callable[[], list[str]], Callable[..., nn.Module]]] = {
    "torchvision": ("torchvision", "torchvision.", _list_torchvision, _torchvision),
    "timm": ("timm", "timm.", _list_timm, _timm),
    "segmentation_models_pytorch": ("segmentation-models-pytorch", "smp.", _list_smp, _smp),
}


@functools.cache
def offered(zoo: str) -> tuple[tuple[str, ...], str]:
    """(the zoo's model names, "") — or ((), why) where it is not installed or does not import
    beside this torch (a build for another torch: torchvision's ``nms`` operator …)."""
    distribution, _, list_names, _ = ZOOS[zoo]
    try:
        version = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return (), f"package {zoo!r} is not installed"
    path = cache_dir() / "zoo" / f"{zoo}-{version}-torch-{torch.__version__}.json"
    try:
        known = json.loads(path.read_text())
        return tuple(known["names"]), str(known["why"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not seen yet (or a damaged file): find out, once
    try:
        names: tuple[str, ...] = tuple(list_names())
        why = ""
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        names, why = (), f"package {zoo!r} does not import ({type(exc).__name__}: {first})"
    with contextlib.suppress(StorageError):  # an unwritable cache: the zoo is imported again next time
        atomic_write_text(path, json.dumps({"names": names, "why": why}))
    return names, why


@hookimpl
def prunekit_models() -> list[Spec]:
    specs = []
    for zoo, (_, prefix, _, build) in ZOOS.items():
        for name in offered(zoo)[0]:
            specs.append(
                Spec(f"{prefix}{name}", functools.partial(build, name), f"{zoo}'s {name}, no pretrained weights")
            )
    return specs


@hookimpl
def prunekit_unavailable() -> dict[str, str]:
    """The zoos that are missing or do not import here, and why."""
    return {f"model {prefix}": why for zoo, (_, prefix, _, _) in ZOOS.items() if (why := offered(zoo)[1])}
