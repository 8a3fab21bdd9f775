"""The zoo plugin against the real libraries: each model built by its prunekit name (random
weights and BatchNorm statistics, float64), then

- its MACs by ``pk.count`` beside torch's ``FlopCounterMode`` (convolutions and matrix products),
- a prune of ~30 % of every prunable group: the largest difference between the pruned model's
  output and the unpruned model's with those channels zeroed, relative to the largest output,
- the recount of the pruned model beside the cost model's prediction,
- the share of producer channels that may be pruned (those reaching the output left out), and
  the time of the trace, removal and surgery. The tracer's notes on channels that stay (LayerNorm
over channels, say) are silenced here; `pk.trace` prints them.

A row fails when the MACs differ, the outputs differ by more than 1e-8 or the recount is not the
prediction; the script then exits with 1. Where a zoo does not import, its rows are skipped with
the reason.

    python benchmarks/zoo_sweep.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

import prunekit as pk
from prunekit.testing import compare_pruned, prunable_share, randomize

TOLERANCE = 1e-8
CLASSIFIER = (1, 3, 64, 64)
SEGMENTER = (1, 3, 64, 64)
#: (prunekit name, arguments, input size)
CASES: list[tuple[str, dict[str, Any], tuple[int, ...]]] = [
    ("torchvision.resnet18", {"num_classes": 10}, CLASSIFIER),
    ("torchvision.mobilenet_v2", {"num_classes": 10}, CLASSIFIER),
    ("torchvision.mobilenet_v3_small", {"num_classes": 10}, CLASSIFIER),
    ("torchvision.efficientnet_b0", {"num_classes": 10}, CLASSIFIER),
    ("torchvision.densenet121", {"num_classes": 10}, CLASSIFIER),
    ("torchvision.regnet_x_400mf", {"num_classes": 10}, CLASSIFIER),
    ("torchvision.convnext_tiny", {"num_classes": 10}, CLASSIFIER),
    ("torchvision.vgg11_bn", {"num_classes": 10}, CLASSIFIER),
    ("timm.hrnet_w18_small", {"num_classes": 10}, CLASSIFIER),
    ("timm.ghostnet_100", {"num_classes": 10}, CLASSIFIER),
    ("timm.cspresnet50", {"num_classes": 10}, CLASSIFIER),
    ("timm.dla34", {"num_classes": 10}, CLASSIFIER),
    ("smp.Unet", {"encoder_name": "resnet18", "classes": 4}, SEGMENTER),
    ("smp.Unet", {"encoder_name": "mobilenet_v2", "classes": 4}, SEGMENTER),
    ("smp.UnetPlusPlus", {"encoder_name": "resnet18", "classes": 4}, SEGMENTER),
    ("smp.FPN", {"encoder_name": "resnet18", "classes": 4}, SEGMENTER),
    ("smp.FPN", {"encoder_name": "mobilenet_v2", "classes": 4}, SEGMENTER),
    ("smp.DeepLabV3Plus", {"encoder_name": "resnet18", "classes": 4}, SEGMENTER),
    ("smp.Linknet", {"encoder_name": "resnet18", "classes": 4}, SEGMENTER),
    ("smp.PSPNet", {"encoder_name": "resnet18", "classes": 4}, SEGMENTER),
]
ZOOS = {"torchvision.": "torchvision", "timm.": "timm", "smp.": "segmentation_models_pytorch"}


@dataclass
class Row:
    label: str
    macs: float
    reference_macs: int
    difference: float
    exact_recount: bool
    prunable: float
    seconds: float

    @property
    def ok(self) -> bool:
        return self.macs == self.reference_macs and self.difference <= TOLERANCE and self.exact_recount


def label(name: str, args: dict[str, Any]) -> str:
    return f"{name}({args['encoder_name']})" if "encoder_name" in args else name


def reference_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2  # it counts a multiply-accumulate as two


def measure(name: str, args: dict[str, Any], size: tuple[int, ...]) -> Row:
    model = randomize(pk.get("model", name, **args))
    x = torch.randn(size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    share = prunable_share(pk.trace(model, x))
    began = time.perf_counter()
    found = compare_pruned(model, x, fraction=0.3, seed=0)
    seconds = time.perf_counter() - began
    return Row(
        label(name, args),
        pk.count(model, x).macs,
        reference_macs(model, x),
        found.difference,
        found.predicted == found.recount,
        share,
        seconds,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="prunekit names (or labels) to measure")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="the channels of", category=RuntimeWarning)
    missing = pk.Manager().unavailable()  # the zoos that do not import here, and why
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64, ~30 % of every prunable group\n")
    print("| model | MACs (pk.count) | MACs equal FlopCounterMode | output diff (relative) | recount = prediction "
          "| prunable channels | prune time |")  # fmt: skip
    print("|---|---:|:-:|---:|:-:|---:|---:|")
    failed = measured = 0
    for name, kwargs, size in CASES:
        if args.only and name not in args.only and label(name, kwargs) not in args.only:
            continue
        why = next((w for prefix, w in missing.items() if f"model {name}".startswith(prefix)), None)
        if why:
            print(f"| {label(name, kwargs)} | skipped: {why} ||||||")
            continue
        row = measure(name, kwargs, size)
        measured += 1
        failed += not row.ok
        equal = "yes" if row.macs == row.reference_macs else f"NO ({row.reference_macs:,})"
        print(
            f"| {row.label} | {row.macs:,.0f} | {equal} "
            f"| {row.difference:.1e} | {'yes' if row.exact_recount else 'NO'} | {row.prunable:.0%} "
            f"| {row.seconds:.2f} s |",
            flush=True,
        )
    print(f"\n{measured} measured, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
