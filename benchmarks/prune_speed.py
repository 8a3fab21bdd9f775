"""One-shot pruning speed and the latency it buys: prunekit against Torch-Pruning, same run.

U-Net (width 64) at 1×1×192×320 is pruned once, globally, by L1 weight magnitude, without
retraining, to 26 % of its MACs with the head protected (prunekit: layer and block limits 90 %).
When torch-pruning is installed, its global MagnitudePruner goes to the same MACs in the same
process (iterative steps, stopping at the target — the loop its documentation shows). Printed:
wall time and ratio, MACs and parameters reached, CPU latency before/after and the ideal ratio.
Then the same on RITnet's DenseNet (Torch-Pruning's failure is reported if it fails).

    python benchmarks/prune_speed.py [--repeats 20] [--target 26] [--normalize l2]
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import prunekit as pk  # noqa: E402
from _timing import fmt_seconds  # noqa: E402
from prunekit.latency import measure  # noqa: E402
from prunekit.costmodel import CostModel  # noqa: E402
from prunekit.scoring import NORMALIZATIONS, group_scores  # noqa: E402
from prunekit.selection import Budget, Limits, Reference, select  # noqa: E402
from prunekit.surgery import remove  # noqa: E402


def prunekit_one_shot(model: torch.nn.Module, x: torch.Tensor, keep_percent: float, normalize: str) -> None:
    graph = pk.trace(model, x)
    cost = CostModel(graph)
    reference = Reference.of(graph)
    scores = group_scores(graph, {"weight_norm": (pk.get("criterion", "weight_norm", p=1), 1.0)}, normalize)
    floor = keep_percent / 100 * cost.macs
    selection = select(graph, scores, cost, reference, Limits(90.0, 90.0), Budget("macs", cost.macs, floor_macs=floor))
    remove(model, graph, selection.removal)


def torch_pruning_one_shot(model: torch.nn.Module, x: torch.Tensor, head: torch.nn.Module, keep_percent: float) -> None:
    import torch_pruning as tp

    target = keep_percent / 100 * tp.utils.count_ops_and_params(model, x)[0]
    pruner = tp.pruner.MagnitudePruner(model, x, importance=tp.importance.MagnitudeImportance(p=1),
                                       global_pruning=True, pruning_ratio=0.9, iterative_steps=90,
                                       ignored_layers=[head])
    for _ in range(90):
        pruner.step()
        if tp.utils.count_ops_and_params(model, x)[0] <= target:
            return


def compare(name: str, head: str, size: tuple[int, ...], keep: float, repeats: int, normalize: str) -> None:
    torch.manual_seed(0)
    base = pk.get("model", name).eval()
    x = torch.randn(size)
    before = pk.count(base, x)
    print(f"== {name} at {'×'.join(map(str, size))}: {before.macs / 1e9:.2f} GMACs, {before.params / 1e6:.2f} M params ==")
    pruned = []
    tools = [("prunekit", lambda m: prunekit_one_shot(m, x, keep, normalize))]
    if importlib.util.find_spec("torch_pruning"):
        tools.append(("torch-pruning", lambda m: torch_pruning_one_shot(m, x, dict(m.named_modules())[head], keep)))
    else:
        print("torch-pruning is not installed (pip install 'prunekit[bench]'): prunekit only")
    for tool, run in tools:
        model = copy.deepcopy(base)
        start = time.perf_counter()
        try:
            run(model)
        except Exception as exc:  # report the other tool's failure instead of dying
            print(f"{tool}: FAILED after {time.perf_counter() - start:.1f} s — {type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}")
            traceback.print_exc(limit=3, file=sys.stdout)
            continue
        pruned.append((tool, time.perf_counter() - start, pk.count(model, x), model))
    base_latency, *latencies = measure([base] + [model for *_, model in pruned], x, repeats, warmup=3)
    rows = [(tool, seconds, after, lat) for (tool, seconds, after, _), lat in zip(pruned, latencies)]
    print(f"baseline latency {fmt_seconds(base_latency).strip()}")
    print(f"{'tool':14} {'prune time':>12} {'MACs %':>8} {'params %':>9} {'latency':>12} {'speed-up':>9} {'ideal':>7}")
    for tool, seconds, after, lat in rows:
        print(f"{tool:14} {fmt_seconds(seconds)} {100 * after.macs / before.macs:8.2f} "
              f"{100 * after.params / before.params:9.2f} {fmt_seconds(lat)} {base_latency / lat:8.2f}× "
              f"{before.macs / after.macs:6.2f}×")
    if len(rows) == 2:
        (_, ours, _, our_lat), (_, theirs, _, their_lat) = rows
        print(f"prunekit is {theirs / ours:.1f}× faster to prune (target ≥ 10×); "
              f"latency speed-up {base_latency / our_lat:.2f}× vs {base_latency / their_lat:.2f}×")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--target", type=float, default=26.0, help="percent of the MACs to keep")
    parser.add_argument("--normalize", default="l2", choices=NORMALIZATIONS, help="prunekit's per-layer normalisation")
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads; latency: median of {args.repeats} interleaved rounds after 3 warm-up "
          f"rounds, batch 1; prunekit normalises per layer by {args.normalize}\n")
    compare("unet", "outc", (1, 1, 192, 320), args.target, args.repeats, args.normalize)
    compare("densenet", "out_conv1", (1, 1, 192, 320), args.target, args.repeats, args.normalize)


if __name__ == "__main__":
    main()
