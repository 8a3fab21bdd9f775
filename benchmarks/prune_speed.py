"""One-shot pruning speed and the latency it buys: prunekit against Torch-Pruning, same run.

U-Net (width 64) at 1×1×192×320 is pruned once, globally, by L1 weight magnitude, without
retraining, to 26 % of its MACs with the head protected. prunekit runs twice: within layer and
block limits of 90 % of their parameters, and — like Torch-Pruning, which has no such limits —
without them, ranking by importance per estimated latency saved (``per_cost: latency``).
When torch-pruning is installed, its global MagnitudePruner goes to the same MACs in the same
process (iterative steps, stopping at the target — the loop its documentation shows), and
prunekit then runs once more to exactly the MACs Torch-Pruning reached. Printed:
wall time and ratio, MACs and parameters reached, CPU latency before/after and the ideal ratio.
Then the same on RITnet's DenseNet (Torch-Pruning's failure is reported if it fails), and on
RegNetX-400MF at 1×3×224×224, whose every block holds a grouped 3×3 convolution.

    python benchmarks/prune_speed.py [--repeats 20] [--target 26] [--normalize l2] [--per-cost latency]
                                     [--models unet,densenet,regnet]
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib.util
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import fmt_seconds

import prunekit as pk
from prunekit.cost import measure
from prunekit.pruning import COST_MEASURES, NORMALIZATIONS
from prunekit.schema import build


def prunekit_one_shot(
    model: torch.nn.Module, x: torch.Tensor, keep_percent: float, normalize: str, by_cost: str, limit: float
) -> None:
    """One step to ``keep_percent`` of the MACs, ranked by the L1 weight norm, in place."""
    away = 100.0 - keep_percent
    budget = pk.ResourceBudget(pk.count(model, x), "macs", away, ("percent", away))
    settings = {"weights": {"weight_norm": 1.0}, "args": {"weight_norm": {"p": 1}}, "normalize": normalize}
    criteria = build(pk.CriterionConfig, {**settings, "per_cost": by_cost})
    pk.PruningStep(model, x, budget, criteria=criteria, limits=pk.Limits(limit, limit)).cut()


def torch_pruning_one_shot(
    model: torch.nn.Module, x: torch.Tensor, head: torch.nn.Module, keep_percent: float, steps: int
) -> None:
    import torch_pruning as tp

    target = keep_percent / 100 * tp.utils.count_ops_and_params(model, x)[0]
    pruner = tp.pruner.MagnitudePruner(
        model,
        x,
        importance=tp.importance.MagnitudeImportance(p=1),
        global_pruning=True,
        pruning_ratio=0.9,
        iterative_steps=steps,
        ignored_layers=[head],
    )
    for _ in range(steps):
        pruner.step()
        if tp.utils.count_ops_and_params(model, x)[0] <= target:
            return


def compare(name: str, head: str, size: tuple[int, ...], tp_steps: int, args: argparse.Namespace) -> None:
    keep = args.target
    torch.manual_seed(0)
    base = pk.get("model", name).eval()
    x = torch.randn(size)
    before = pk.count(base, x)
    print(
        f"== {name} at {'×'.join(map(str, size))}: {before.macs / 1e9:.2f} GMACs, {before.params / 1e6:.2f} M params =="
    )
    pruned = []
    tools: list[tuple[str, Callable[[torch.nn.Module], None]]] = [
        (
            f"prunekit {label}",
            functools.partial(
                prunekit_one_shot, x=x, keep_percent=keep, normalize=args.normalize, by_cost=args.per_cost, limit=limit
            ),
        )
        for label, limit in ((f"limit {args.limit:.0f}%", args.limit), ("no limits", 100.0))
    ]
    if importlib.util.find_spec("torch_pruning"):
        tools.append(
            (
                f"torch-pruning {tp_steps} st",
                lambda m: torch_pruning_one_shot(m, x, dict(m.named_modules())[head], keep, tp_steps),
            )
        )
    else:
        print("torch-pruning is not installed (pip install 'prunekit[bench]'): prunekit only")
    for tool, run in tools:
        model = copy.deepcopy(base)
        start = time.perf_counter()
        try:
            run(model)
        except Exception as exc:  # report the other tool's failure instead of dying
            print(
                f"{tool}: FAILED after {time.perf_counter() - start:.1f} s — {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}"
            )
            traceback.print_exc(limit=3, file=sys.stdout)
            continue
        pruned.append((tool, time.perf_counter() - start, pk.count(model, x), model))
        if tool.startswith("torch-pruning"):  # prunekit again, to exactly the MACs Torch-Pruning reached
            reached = 100 * pruned[-1][2].macs / before.macs
            model, start = copy.deepcopy(base), time.perf_counter()
            prunekit_one_shot(model, x, reached, args.normalize, args.per_cost, 100.0)
            pruned.insert(-1, ("prunekit to its MACs", time.perf_counter() - start, pk.count(model, x), model))
    base_latency, *latencies = measure([base] + [model for *_, model in pruned], x, args.repeats, warmup=3)
    rows = [(tool, seconds, after, lat) for (tool, seconds, after, _), lat in zip(pruned, latencies)]
    print(f"baseline latency {fmt_seconds(base_latency).strip()}")
    print(f"{'tool':20} {'prune time':>12} {'MACs %':>8} {'params %':>9} {'latency':>12} {'speed-up':>9} {'ideal':>7}")
    for tool, seconds, after, lat in rows:
        print(
            f"{tool:20} {fmt_seconds(seconds)} {100 * after.macs / before.macs:8.2f} "
            f"{100 * after.params / before.params:9.2f} {fmt_seconds(lat)} {base_latency / lat:8.2f}× "
            f"{before.macs / after.macs:6.2f}×"
        )
    if rows[-1][0].startswith("torch-pruning"):
        _, theirs, _, their_lat = rows[-1]
        for tool, ours, _, our_lat in rows[:-1]:
            print(
                f"{tool}: {theirs / ours:.1f}× faster to prune than Torch-Pruning (target ≥ 10×); "
                f"latency speed-up {base_latency / our_lat:.2f}× vs its {base_latency / their_lat:.2f}×"
            )
    print()


#: model -> (its head, which both tools leave alone; input size; Torch-Pruning's iterative steps).
#: On RegNet, Torch-Pruning 1.6.1 fails (IndexError in its grouped-convolution handling) after
#: 6–9 steps when asked for 20 or more; 10 is the finest setting that reaches the target.
MODELS = {
    "unet": ("outc", (1, 1, 192, 320), 90),
    "densenet": ("out_conv1", (1, 1, 192, 320), 90),
    "regnet": ("fc", (1, 3, 224, 224), 10),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--target", type=float, default=26.0, help="percent of the MACs to keep")
    parser.add_argument("--normalize", default="l2", choices=NORMALIZATIONS, help="prunekit's per-layer normalisation")
    parser.add_argument(
        "--per-cost",
        default="latency",
        choices=("none", *COST_MEASURES),
        help="prunekit ranks by importance per unit of this cost",
    )
    parser.add_argument("--limit", type=float, default=90.0, help="prunekit's layer and block limit, percent")
    parser.add_argument("--models", default=",".join(MODELS), help=f"which of {', '.join(MODELS)}")
    args = parser.parse_args()
    print(
        f"{torch.get_num_threads()} threads; latency: median of {args.repeats} interleaved rounds after 3 warm-up "
        f"rounds, batch 1; prunekit normalises per layer by {args.normalize}"
        f"; importance per cost: {args.per_cost}\n"
    )
    for name in args.models.split(","):
        compare(name, *MODELS[name], args)


if __name__ == "__main__":
    main()
