"""Does the default small U-Net learn synthetic_eyes? Trains it as the demo does (same data,
epochs, optimizer and losses) and prints the validation mIoU and IoU per class, and the time.

    python benchmarks/baseline_miou.py [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import yaml

import prunekit as pk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = yaml.safe_load(pk.config.demo_text())
    with tempfile.TemporaryDirectory() as tmp:
        cfg.update(seed=args.seed, run_dir=tmp)
        start = time.perf_counter()
        state = pk.Pruner.from_config(cfg).prepare()  # trains the baseline exactly as the demo does
        seconds = time.perf_counter() - start
        metrics = state.trainer.evaluate(state.teacher)
        state.log.close()
    names = state.data.class_names
    print(
        f"\nU-Net {cfg['model']['args']} on synthetic_eyes {cfg['data']['args']}, {cfg['train']['epochs']} epochs, "
        f"{torch.get_num_threads()} threads: {seconds:.0f} s"
    )
    print(f"validation mIoU {metrics['miou']:.4f} (target ≥ 0.85)")
    for i, name in enumerate(names):
        print(f"  IoU {name:12} {metrics[f'iou_{i}']:.4f}")


if __name__ == "__main__":
    main()
