"""Fast where it is deployed: the speed-up a pruned model measures in eager PyTorch, torch.compile and
ONNX Runtime against the share of MACs it kept — prunekit's defaults beside Torch-Pruning's, all
measured in one run.

Six models — torchvision's ResNet-18 and MobileNetV2 and timm's EfficientNet-B0 at 1×3×224×224,
smp's Unet(resnet18) at 1×3×256×256, the demo's U-Net (width 16) and RITnet's DenseNet at
1×1×192×320 — random weights (time does not depend on them), each pruned without data or
retraining to 50 % and to 26 % of its MACs by

- ``prunekit defaults``: ``pk.prune_to(model, x, percent=…)`` as it comes — filter norms, layer
  and block limits of 75 %, channel counts aligned (``align="auto"``: multiples of 16 on a CPU);
- ``prunekit, not aligned``: the same with ``align=None``, as prunekit pruned before alignment;
- Torch-Pruning 1.6.1 (``pip install torch-pruning==1.6.1``) at the settings its README shows: a
  ``MetaPruner`` with its group L2 magnitude importance, local pruning (one ratio for every
  layer), the output layers ignored, ``round_to`` None (its default) and 8, stepped in its own 1 %
  increments until the MACs are reached.

Every pruned model is timed with its unpruned model in turns — 1 thread, batch 1, ``--repeats``
rounds after 2 warm-up rounds — in each runtime. Printed per model and level: MACs kept, and per
runtime the speed-up (median of the rounds, with its 95 % interval) and the speed-up as a share of
the MACs ratio; then, per method and runtime, the median of that share over the models, and the
smallest speed-up.

``--target 2`` runs the other check instead: a YAML run (``prunekit run`` as a user writes it:
``pruning: {resource: latency, target_speedup: 2, runtime: onnxruntime}``, no retraining) on the
U-Net and the DenseNet, ``--runs`` times each, every result measured again apart — a fresh
session of the export and of the baseline, ``--repeats`` rounds.

    python benchmarks/deploy_speed.py [--models unet,densenet,...] [--levels 50,26] [--repeats 15]
                                      [--runtimes eager,compile,onnxruntime] [--methods ...] [--json out.json]
    python benchmarks/deploy_speed.py --target 2 [--runs 3] [--runtime onnxruntime]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import prunekit as pk
from prunekit.cost import Speedup, measure_rounds, speedup

#: name -> (prunekit model name, arguments, input size)
MODELS: dict[str, tuple[str, dict[str, Any], tuple[int, ...]]] = {
    "resnet18": ("torchvision.resnet18", {}, (1, 3, 224, 224)),
    "mobilenet_v2": ("torchvision.mobilenet_v2", {}, (1, 3, 224, 224)),
    "efficientnet_b0": ("timm.efficientnet_b0", {}, (1, 3, 224, 224)),
    "smp_unet": ("smp.Unet", {"encoder_name": "resnet18", "classes": 4}, (1, 3, 256, 256)),
    "unet": ("unet", {"in_channels": 1, "n_classes": 4, "width": 16, "activation": "leaky_relu"}, (1, 1, 192, 320)),
    "densenet": ("densenet", {"in_channels": 1, "n_classes": 4, "channel_size": 32}, (1, 1, 192, 320)),
}
Prune = Callable[[nn.Module, torch.Tensor, float], nn.Module]


def prunekit_defaults(model: nn.Module, x: torch.Tensor, kept: float) -> nn.Module:
    return pk.prune_to(model, x, percent=100.0 - kept).model


def prunekit_unaligned(model: nn.Module, x: torch.Tensor, kept: float) -> nn.Module:
    return pk.prune_to(model, x, percent=100.0 - kept, align=None).model


def torch_pruning(round_to: int | None) -> Prune:
    def prune(model: nn.Module, x: torch.Tensor, kept: float) -> nn.Module:
        import torch_pruning as tp

        model = copy.deepcopy(model)
        target = kept / 100 * tp.utils.count_ops_and_params(model, x)[0]
        modules = dict(model.named_modules())
        ignored = [modules[p] for g in pk.trace(model, x).groups if not g.prunable for p in g.producers]
        pruner = tp.pruner.MetaPruner(
            model, x, importance=tp.importance.GroupMagnitudeImportance(p=2), global_pruning=False,
            pruning_ratio=0.95, iterative_steps=100, ignored_layers=ignored, round_to=round_to,
        )  # fmt: skip
        while tp.utils.count_ops_and_params(model, x)[0] > target and pruner.current_step < 100:
            pruner.step()
        return model

    return prune


METHODS: dict[str, Prune] = {
    "prunekit defaults": prunekit_defaults,
    "prunekit, not aligned": prunekit_unaligned,
    "Torch-Pruning, round_to None": torch_pruning(None),
    "Torch-Pruning, round_to 8": torch_pruning(8),
}


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    model_name, args, size = MODELS[name]
    model = pk.get("model", model_name, **args).eval()
    return model, torch.randn(size, generator=torch.Generator().manual_seed(0))


def measured_in(runtime: str, models: list[nn.Module], x: torch.Tensor, repeats: int) -> list[Speedup | str]:
    """Each model's speed-up over the first (the unpruned one), all in turns in ``runtime``."""
    try:
        rounds = measure_rounds(models, x, repeats=repeats, runtime=pk.get("runtime", runtime))
    except Exception as exc:
        return [f"fails: {str(exc).splitlines()[0][:60]}"] * len(models)
    return [speedup(r, rounds[0]) for r in rounds]


def one_model(name: str, args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    model, x = build(name)
    macs = pk.count(model, x).macs
    for kept in args.levels:
        pruned: dict[str, nn.Module | str] = {}
        for method in args.methods:
            try:
                pruned[method] = METHODS[method](model, x, kept).eval()
            except Exception as exc:
                pruned[method] = f"fails: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        timed = [m for m in pruned.values() if isinstance(m, nn.Module)]
        speeds = {rt: measured_in(rt, [model, *timed], x, args.repeats)[1:] for rt in args.runtimes}
        print(f"\n### {name} ({MODELS[name][0]}, {'×'.join(map(str, x.shape))}) at {kept:.0f} % of the MACs\n")
        print("| method | MACs % | " + " | ".join(f"{rt} speed-up | % of MACs ratio" for rt in args.runtimes) + " |")
        print("|---|---|" + "---|---|" * len(args.runtimes))
        index = 0
        for method, pruned_model in pruned.items():
            if isinstance(pruned_model, str):
                print(f"| {method} | {pruned_model} |" + " - | - |" * len(args.runtimes))
                continue
            ratio = macs / pk.count(pruned_model, x).macs
            row = {"model": name, "level": kept, "method": method, "macs_percent": 100 / ratio}
            cells = []
            for rt in args.runtimes:
                measured = speeds[rt][index]
                if isinstance(measured, str):
                    cells += [measured, "-"]
                    continue
                row[rt] = {"median": measured.median, "low": measured.low, "high": measured.high}
                cells += [str(measured), f"{100 * measured.median / ratio:.0f} %"]
            index += 1
            results.append(row)
            print(f"| {method} | {100 / ratio:.1f} | " + " | ".join(cells) + " |", flush=True)


def summary(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print("\n### Over the models: the median share of the MACs ratio, and the smallest speed-up\n")
    print("| method | level | " + " | ".join(args.runtimes) + " |")
    print("|---|---|" + "---|" * len(args.runtimes))
    for method in args.methods:
        for kept in args.levels:
            rows = [r for r in results if r["method"] == method and r["level"] == kept]
            cells = []
            for rt in args.runtimes:
                shares = [r[rt]["median"] * r["macs_percent"] / 100 for r in rows if rt in r]
                worst = min((r[rt]["median"] for r in rows if rt in r), default=float("nan"))
                told = f"{100 * statistics.median(shares):.0f} %, ≥ {worst:.2f}× ({len(shares)})" if shares else "-"
                cells.append(told)
            print(f"| {method} | {kept:.0f} % | " + " | ".join(cells) + " |")


def target_runs(args: argparse.Namespace) -> None:
    """YAML runs to a measured speed-up in ``args.runtime``, each measured again apart."""
    print(f"pruning: {{resource: latency, target_speedup: {args.target}, runtime: {args.runtime}}}, no retraining\n")
    print("| model | run | MACs % | steps | the run measured | measured apart | time |")
    print("|---|---|---|---|---|---|---|")
    for name in ("unet", "densenet"):
        model_name, model_args, size = MODELS[name]
        for run in range(1, args.runs + 1):
            with tempfile.TemporaryDirectory() as folder:
                config = {
                    "seed": run, "run_dir": f"{folder}/run", "input_size": list(size),
                    "model": {"name": model_name, "args": model_args},
                    "data": {"name": "synthetic_eyes", "args": {"size": list(size[2:]), "n_train": 8, "n_val": 4}},
                    "train": {"epochs": 0}, "retrain": "none", "finetune": {"epochs": 0},
                    "pruning": {"resource": "latency", "target_speedup": args.target, "runtime": args.runtime,
                                "step": {"percent": 20}, "max_drop": None, "class_floor": None,
                                "compare_runtimes": [], "latency_repeats": args.repeats},
                }  # fmt: skip
                began = time.perf_counter()
                result = pk.Pruner(config, progress=False).run()
                seconds = time.perf_counter() - began
                exported = pk.load(f"{folder}/run").eval()
            baseline = pk.get("model", model_name, **model_args).eval()
            base, pruned = measure_rounds(
                [baseline, exported], torch.randn(size), repeats=args.repeats, runtime=pk.get("runtime", args.runtime)
            )
            apart = speedup(pruned, base)
            own = next(r for r in result.summary["speed"] if r["batch"] == 1)
            print(
                f"| {name} | {run} | {result.summary['macs_percent']:.1f} | {len(result.steps)} | "
                f"{Speedup(own['speedup'], own['low'], own['high'])} | **{apart}** | {seconds:.0f} s |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--levels", default="50,26", help="percent of the MACs kept")
    parser.add_argument("--runtimes", default="eager,compile,onnxruntime")
    parser.add_argument("--methods", default=";".join(METHODS), help="';'-separated")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", help="write every measured row here")
    parser.add_argument("--target", type=float, help="instead: YAML runs to this measured speed-up")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--runtime", default="onnxruntime", help="with --target")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"prunekit {pk.__version__}, torch {torch.__version__}, 1 thread, batch 1, {args.repeats} rounds in turns")
    if args.target:
        target_runs(args)
        return
    args.levels = [float(v) for v in args.levels.split(",")]
    args.runtimes, args.methods = args.runtimes.split(","), args.methods.split(";")
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        sys.exit(f"unknown methods {unknown}; known: {list(METHODS)}")
    results: list[dict[str, Any]] = []
    for name in args.models.split(","):
        try:
            one_model(name, args, results)
        except Exception:
            print(f"\n### {name}: failed\n```\n{traceback.format_exc(limit=3)}```")
    summary(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
