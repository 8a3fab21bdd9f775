"""Pruning to a measured speed-up: prunekit's latency budget against a MACs budget and
Torch-Pruning, each taken to the same measured latency, all in one run.

For the demo's U-Net (width 16) and RITnet's DenseNet at 1×1×192×320 (random weights: latency
does not depend on them), the latency table is built (or read from the cache) and calibrated;
then, for each target speed-up, every method prunes by L1 weight magnitude, without retraining,
until the speed-up *measured* against the unpruned model (in turns, batch 1) reaches the target:

- prunekit, latency budget: one shot to the table's prediction of the target, then — like the
  loop — further shots corrected by the last measurement, until the measurement agrees;
- the same, measured before the cut (``pruning.latency_checks: 2``): a selection predicted to reach
  the target is measured on a cut copy and chosen again, corrected, while it falls short — still
  one cut of the model;
- prunekit, MACs budget: 2 % of the original MACs at a time until the measurement agrees;
- Torch-Pruning's global magnitude pruner (when installed): 1 % steps until it agrees;
- the pruning loop itself (``pruning.resource: latency, target_speedup``, ranked per predicted
  second saved: ``per_cost: latency``), no retraining.

Printed per target: the measured speed-up reached, MACs and parameters left, shots taken, and for
the latency budget its predicted speed-up before each measurement; then the table's build time
and its prediction of whole forwards against forwards measured in the same rounds as the
calibration.

    python benchmarks/latency_target.py [--targets 1.5,2] [--repeats 10] [--models unet,densenet]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _timing import fmt_seconds

import prunekit as pk
from prunekit.cost import LatencyTable, build_table, calibrate_table, layer_sum, measure
from prunekit.pruning import LatencyBudget, thinned_copy

SIZE = (1, 1, 192, 320)
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "unet": ("outc", {"in_channels": 1, "n_classes": 4, "width": 16, "activation": "leaky_relu"}),
    "densenet": ("out_conv1", {"in_channels": 1, "n_classes": 4, "channel_size": 32}),
}


#: how both prunekit budgets rank here: the L1 filter norm, normalised per layer by l2
L1 = pk.CriterionConfig({"weight_norm": 1.0}, {"weight_norm": {"p": 1}}, "l2")


def until(base: nn.Module, target: float, shot: Callable[[nn.Module], float]) -> tuple[nn.Module, list[float]]:
    """Shots on a copy of ``base`` until the speed-up each measures after itself reaches ``target``
    (at most 60); the model and the measured speed-ups."""
    model, measured = copy.deepcopy(base), [1.0]
    while measured[-1] < target and len(measured) <= 60:
        measured.append(shot(model))
    return model, measured[1:]


def torch_pruning(base: nn.Module, x: torch.Tensor, head: str, target: float, repeats: int):
    import torch_pruning as tp

    model = copy.deepcopy(base)
    pruner = tp.pruner.MagnitudePruner(
        model,
        x,
        importance=tp.importance.MagnitudeImportance(p=1),
        global_pruning=True,
        pruning_ratio=0.9,
        iterative_steps=90,
        ignored_layers=[dict(model.named_modules())[head]],
    )
    for shots in range(1, 91):
        pruner.step()
        base_s, now = measure([base, model], x, repeats)
        if base_s / now >= target:
            return model, base_s / now, shots
    return model, base_s / now, 90


def loop(name: str, args: dict, target: float, repeats: int) -> tuple[float, float, float, int]:
    """The pruning loop with a latency budget, no retraining: (speed-up, MACs %, params %, steps)."""
    cfg = yaml.safe_load(pk.config.demo_text())
    with tempfile.TemporaryDirectory() as tmp:
        cfg.update(run_dir=str(Path(tmp) / "run"), distillation={})
        cfg["model"] = {"name": name, "args": args}
        cfg["data"]["args"].update(size=list(SIZE[2:]), n_train=8, n_val=4)
        cfg["data"]["batch_size"] = 4
        cfg["train"]["epochs"] = cfg["retrain"]["epochs_per_step"] = cfg["finetune"]["epochs"] = 0
        cfg["pruning"].update(
            resource="latency",
            target_speedup=target,
            step={"percent": 20},
            layer_limit_percent=100,
            block_limit_percent=100,
            latency_repeats=repeats,
            criterion={"weights": {"weight_norm": 1.0}, "normalize": "l2", "per_cost": "latency"},
            max_steps=30,
            max_drop=None,  # an untrained model: no metric to guard
            class_floor=None,
        )
        result = pk.Pruner(cfg, progress=False).prune()
        last = result.steps[-1]
        return last.speedup or 1.0, last.macs_percent, last.params_percent, len(result.steps)


def compare(name: str, targets: list[float], repeats: int) -> None:
    head, model_args = MODELS[name]
    torch.manual_seed(0)
    base, x = pk.get("model", name, **model_args).eval(), torch.randn(SIZE)
    graph = pk.trace(base, x)
    start = time.perf_counter()
    table = build_table(graph, torch.device("cpu"))
    thin = thinned_copy(base, lambda m: pk.trace(m, x), table.align)
    calibrate_table(table, x, (base, graph), thin, repeats)
    before = pk.count(base, x)
    print(
        f"== {name} at {'×'.join(map(str, SIZE))}: {before.macs / 1e9:.2f} GMACs, {before.params / 1e6:.2f} M params; "
        f"latency table {time.perf_counter() - start:.1f} s ({table.measured} of {len(table.entries)} layer calls "
        f"measured now, the rest cached), channels in multiples of {table.align} =="
    )
    methods: dict[str, Callable[[float], tuple[nn.Module, float, int, str]]] = {}

    def by_latency(target: float, checks: int) -> tuple[nn.Module, float, int, str]:
        """Steps of the latency budget, by importance per predicted second saved, in the table's
        aligned units, each selection measured before the cut up to ``checks`` times (as the loop
        does); the budget measures the speed-up after every cut."""
        budget = LatencyBudget(before, table, base, x, target, "latency", ("percent", 100.0), repeats=repeats,
                               checks=checks)  # fmt: skip
        predictions: list[float] = []

        def shot(model: nn.Module) -> float:
            criteria = dataclasses.replace(L1, per_cost="latency")
            step = pk.PruningStep(model, x, budget, criteria=criteria, limits=pk.Limits(100.0, 100.0))
            proposal = step.propose()
            predictions.append(table.calibration[0][1] / table.network_seconds(proposal.selection.seconds))
            step.cut(proposal)
            return measured.median if (measured := budget.speedup()) is not None else 1.0

        model, measured = until(base, target, shot)
        shots = ", ".join(f"{p:.2f}× → {m:.2f}×" for p, m in zip(predictions, measured))
        return model, measured[-1], len(measured), f"predicted → measured: {shots}"

    def by_macs(target: float) -> tuple[nn.Module, float, int, str]:
        """Steps of 2 % of the original MACs by importance alone, as a default MACs config does."""

        def shot(model: nn.Module) -> float:
            budget = pk.ResourceBudget(before, "macs", 100.0, ("percent", 2.0))
            pk.PruningStep(model, x, budget, criteria=L1, limits=pk.Limits(100.0, 100.0)).cut()
            base_s, now = measure([base, model], x, repeats)
            return base_s / now

        model, measured = until(base, target, shot)
        return model, measured[-1], len(measured), ""

    methods["prunekit latency budget"] = functools.partial(by_latency, checks=0)
    methods["… measured before the cut"] = functools.partial(by_latency, checks=2)
    methods["prunekit MACs budget"] = by_macs
    if importlib.util.find_spec("torch_pruning"):
        methods["torch-pruning"] = lambda t: (*torch_pruning(base, x, head, t, repeats), "")
    models: list[tuple[str, nn.Module]] = []
    for target in targets:
        print(f"target {target:.2f}×")
        print(f"  {'method':26} {'speed-up':>9} {'MACs %':>8} {'params %':>9} {'shots':>6}")
        for method, run in methods.items():
            try:
                model, speedup, shots, note = run(target)
            except Exception as exc:  # Torch-Pruning fails on the DenseNet's concatenations
                print(f"  {method:26} FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            after = pk.count(model, x)
            models.append((f"{method} {target:.1f}×", model))
            print(
                f"  {method:26} {speedup:8.2f}× {100 * after.macs / before.macs:8.2f} "
                f"{100 * after.params / before.params:9.2f} {shots:6d}  {note}"
            )
        speedup, macs, params, steps = loop(name, model_args, target, repeats)
        print(f"  {'the loop (no retraining)':26} {speedup:8.2f}× {macs:8.2f} {params:9.2f} {steps:6d}")
    prediction_errors(table, (base, graph), thin, models, x, repeats)
    print(
        "  (the latency budget keeps output counts on the alignment; the MACs budget's and Torch-Pruning's are "
        "not, and the table prices them as the next multiple)\n"
    )


def prediction_errors(
    table: LatencyTable,
    full: tuple[nn.Module, Any],
    thin: tuple[nn.Module, Any],
    models: list,
    x: torch.Tensor,
    repeats: int,
) -> None:
    """Predicted against measured whole forwards. The machine's speed drifts over minutes (the
    same baseline measured 43 and 65 ms in one run), so the calibration is measured again here,
    in the same rounds as the models it predicts."""
    seconds = calibrate_table(table, x, full, thin, repeats, also=[m for _, m in models])
    print("  whole forwards, predicted from the table against measured (calibration measured in the same rounds):")
    for (label, model), measured in zip([("baseline", full[0]), *models], [table.calibration[0][1], *seconds]):
        predicted = table.network_seconds(layer_sum(table, pk.trace(model, x)))
        print(
            f"    {label:34} {pk.count(model, x).macs / 1e9:5.2f} GMACs: measured {fmt_seconds(measured)}, "
            f"predicted {fmt_seconds(predicted)} ({100 * (predicted - measured) / measured:+.1f} %)"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="1.5,2")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads; speed-ups measured in turns with the unpruned model, batch 1\n")
    for name in args.models.split(","):
        compare(name, [float(t) for t in args.targets.split(",")], args.repeats)


if __name__ == "__main__":
    main()
