"""How fast are tracing, counting and surgery? U-Net and DenseNet at 1×1×640×400: pk.trace,
pk.count, and one pk.prune of 10 % of every prunable group, each beside one plain forward pass
of the same model, measured in this one run.

    python benchmarks/trace_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import fmt_seconds, median_time

import prunekit as pk
from prunekit.graph import sample


def ten_percent(model: torch.nn.Module, x: torch.Tensor, seed: int = 0) -> dict[str, list[int]]:
    """10 % of the prunable channels of every group, named by one producer of the group."""
    rng = random.Random(seed)
    request = {}
    for group in pk.trace(model, x).groups:
        if len(group.prunable) >= 10:
            channels = sorted(sample(group, 0.1, rng))  # in units its grouped layers allow
            layer = group.producers[0]
            local = {
                ch: index
                for m in group.members
                if m.layer == layer and m.role == "out"
                for index, ch in zip(m.local, m.channel)
            }
            request[layer] = [local[ch] for ch in channels]
    return request


def timings(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> list[tuple[str, float]]:
    """(operation, median seconds): one forward, then trace, count and a 10 % prune."""
    with torch.no_grad():
        forward = median_time(lambda: model(x), repeats)
    request = ten_percent(model, x)
    removed = sum(len(v) for v in request.values())
    copies = iter([copy.deepcopy(model) for _ in range(repeats + 1)])
    return [
        ("plain forward (no_grad)", forward),
        ("pk.trace (channel graph)", median_time(lambda: pk.trace(model, x), repeats)),
        ("pk.count (cost report)", median_time(lambda: pk.count(model, x), repeats)),
        (f"pk.prune of 10 % ({removed} channels)", median_time(lambda: pk.prune(next(copies), x, request), repeats)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    x = torch.randn(1, 1, 640, 400)
    print(f"1×1×640×400, {torch.get_num_threads()} threads, median of {args.repeats}\n")
    print(f"{'model':9} {'operation':34} {'time':>12} {'÷ forward':>10}")
    for name in ("unet", "densenet"):
        rows = timings(pk.get("model", name).eval(), x, args.repeats)
        forward = rows[0][1]
        for operation, seconds in rows:
            print(f"{name:9} {operation:34} {fmt_seconds(seconds)} {seconds / forward:9.3f}×")
        prune_time = rows[-1][1]
        print(f"{name:9} pk.prune costs {prune_time / forward:.2f} of one forward pass (target < 1)\n")


if __name__ == "__main__":
    main()
