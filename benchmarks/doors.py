"""The three doors, measured in one run: how long one call takes, and whether your own training
loop reaches the whole run's quality at the same budget and epochs.

1. ``pk.prune_to`` without data on the README's ``Net`` (1×1×16×16) and on the demo's U-Net
   (1×1×64×96), half the MACs: median wall time of 5 calls, and the share of MACs kept.
2. The demo (the whole run: prunekit's trainer) against ``examples/own_loop.py`` (a plain PyTorch
   loop with a cosine schedule and bf16 autocast, prunekit's steps) — the same U-Net, data,
   budget (60 % of the MACs in steps of 20 %), epochs (7 baseline, 1 per step, 6 more on the last)
   and Hinton distillation — over ``--seeds``: final mIoU per seed, mean and spread.

    python benchmarks/doors.py [--seeds 0,1,2] [--skip-loops]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch import nn

import prunekit as pk

EXAMPLES = Path(__file__).parents[1] / "examples"


class Net(nn.Module):  # the README's model
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.classifier = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def one_call() -> None:
    demo = pk.get("model", "unet", in_channels=1, n_classes=4, width=16, activation="leaky_relu")
    print("1. pk.prune_to(model, x, percent=50), no data; median of 5 calls")
    for name, model, x in (
        ("README Net", Net(), torch.zeros(1, 1, 16, 16)),
        ("demo U-Net", demo, torch.zeros(1, 1, 64, 96)),
    ):
        times, pruned = [], None
        for _ in range(5):
            start = time.perf_counter()
            pruned = pk.prune_to(model, x, percent=50)
            times.append(time.perf_counter() - start)
        assert pruned is not None
        kept = 100 * pruned.after.macs / pruned.before.macs
        print(f"   {name:11} {statistics.median(times) * 1e3:7.1f} ms  {kept:.1f} % of the MACs kept (recount)")


def whole_run(seed: int, folder: Path) -> float:
    cfg = yaml.safe_load(pk.config.demo_text())
    cfg.update(seed=seed, run_dir=str(folder / f"run-{seed}"))
    cfg["data"]["args"]["seed"] = seed
    return pk.Pruner(cfg, progress=False).run().summary["metrics"]["miou"]


def own_loop(seed: int, folder: Path) -> float:
    run_dir = folder / f"own-{seed}"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "own_loop.py"), "--seed", str(seed), "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("final mIoU"))
    return float(line.split()[2].rstrip(";"))


RUNS = (("whole run (the demo)", whole_run), ("your own loop", own_loop))


def loops(seeds: list[int], which: str) -> None:
    print(f"\n2. final mIoU at 60 % of the MACs removed, seeds {seeds}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, run in (r for r in RUNS if which in ("both", r[1].__name__)):
            started = time.perf_counter()
            scores = [run(seed, Path(tmp)) for seed in seeds]
            spread = f"{min(scores):.4f}…{max(scores):.4f}"
            print(
                f"   {label:21} mean {statistics.mean(scores):.4f}  spread {spread}  per seed "
                f"{', '.join(f'{s:.4f}' for s in scores)}  ({time.perf_counter() - started:.0f} s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--skip-loops", action="store_true", help="only the one-call timing")
    parser.add_argument("--loops", default="both", choices=("both", "whole_run", "own_loop"))
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads\n")
    one_call()
    if not args.skip_loops:
        loops([int(s) for s in args.seeds.split(",")], args.loops)


if __name__ == "__main__":
    main()
