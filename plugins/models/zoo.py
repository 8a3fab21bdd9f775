"""Models of the common zoos, by name — ``torchvision.<name>``, ``timm.<name>``, ``smp.<Arch>`` —
registered only when that package imports, built without pretrained weights unless asked for
(nothing is downloaded at run time).

Examples: ``model: {name: torchvision.resnet18, args: {num_classes: 10}}``,
``{name: timm.efficientnet_b0, args: {num_classes: 4}}``,
``{name: smp.Unet, args: {encoder_name: resnet18, classes: 4, in_channels: 1}}``.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import nn

from prunekit.plugin import LayerType, Spec, hookimpl
from prunekit.plugins.layer_types.standard import LayerNorm


@functools.cache
def _imported(name: str) -> tuple[Any, str]:
    """(the module, "") — or (``None``, why) when it is missing or does not import beside this
    torch (a build for another torch: torchvision's ``nms`` operator …)."""
    try:
        return __import__(name, fromlist=["_"]), ""
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"package {name.split('.', maxsplit=1)[0]!r} does not import ({type(exc).__name__}: {first})"


def _importable(name: str) -> Any:
    """The module, or ``None`` when it does not import."""
    return _imported(name)[0]


#: the model names each zoo registers, by the package that must import
PREFIXES = {"torchvision.models": "torchvision.", "timm": "timm.", "segmentation_models_pytorch": "smp."}


@hookimpl
def prunekit_unavailable() -> dict[str, str]:
    """The zoos that do not import here, and why."""
    return {f"model {prefix}": why for package, prefix in PREFIXES.items() if (why := _imported(package)[1])}


def _torchvision(name: str, **args: Any) -> nn.Module:
    from torchvision import models

    args.setdefault("weights", None)
    return models.get_model(name, **args)


def _timm(name: str, **args: Any) -> nn.Module:
    import timm

    args.setdefault("pretrained", False)
    return timm.create_model(name, **args)


def _smp(arch: str, **args: Any) -> nn.Module:
    import segmentation_models_pytorch as smp

    args.setdefault("encoder_weights", None)
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


@hookimpl
def prunekit_models() -> list[Spec]:
    specs = []
    models = _importable("torchvision.models")
    if models is not None:
        specs += [
            Spec(f"torchvision.{n}", functools.partial(_torchvision, n), f"torchvision's {n}, no pretrained weights")
            for n in models.list_models()
        ]
    timm = _importable("timm")
    if timm is not None:
        specs += [
            Spec(f"timm.{n}", functools.partial(_timm, n), f"timm's {n}, no pretrained weights")
            for n in timm.list_models()
        ]
    smp = _importable("segmentation_models_pytorch")
    if smp is not None:
        specs += [
            Spec(
                f"smp.{a}",
                functools.partial(_smp, a),
                f"segmentation_models_pytorch {a}; args encoder_name, classes, in_channels; no pretrained weights",
            )
            for a in SMP_ARCHITECTURES
            if hasattr(smp, a)
        ]
    return specs


#: channels-first LayerNorms of the zoos (subclasses of nn.LayerNorm that permute internally)
LAYER_NORMS_2D = (("torchvision.models.convnext", "LayerNorm2d"), ("timm.layers", "LayerNorm2d"))


@hookimpl
def prunekit_layer_types() -> list[LayerType]:
    """The zoos' ``LayerNorm2d``: LayerNorm over dim 1, cut only where ``layer_norm`` is allowed."""
    found: list[LayerType] = []
    for module, name in LAYER_NORMS_2D:
        cls = getattr(_importable(module), name, None)
        if isinstance(cls, type):
            found.append(LayerNorm(cls, dim=1))
    return found
