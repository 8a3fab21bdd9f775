"""How does retraining scale with processes? Images per second of one retraining epoch of the
demo's U-Net, at 1 and N processes launched by torchrun (gloo on CPU, nccl on GPUs), side by side.

    python benchmarks/ddp_scaling.py [--nproc 2] [--epochs 2]

On CPU every process gets cores/N threads, so the total compute is the same: the ratio shows
what DDP's gradient exchange costs (or, on a GPU machine, what N GPUs gain).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import yaml


def worker(out: Path, epochs: int) -> None:
    """Run under torchrun: time `epochs` retraining epochs; rank 0 writes images/s."""
    import prunekit as pk
    from prunekit import distributed
    from prunekit.run import build_model, build_trainer
    from prunekit.training.data import SplitData

    distributed.init()
    cfg = pk.load_config({**yaml.safe_load(pk.config.demo_text()), "distillation": {}})
    device = distributed.device_for(distributed.resolve_device(cfg.device))
    trainer = build_trainer(cfg, pk.manager(), device, progress=False)
    data, retrain = trainer.data, cfg.retrain
    assert isinstance(data, SplitData) and retrain != "none"
    model = build_model(cfg.model, pk.manager())
    data.splits.val = None  # time training only
    trainer.fit(model, "retrain", retrain, 1, seed=0)  # warm-up
    distributed.barrier()
    start = time.perf_counter()
    trainer.fit(model, "retrain", retrain, epochs, seed=1)
    distributed.barrier()
    seconds = time.perf_counter() - start
    if distributed.is_main():
        out.write_text(json.dumps({"images_per_second": epochs * len(data.splits.train) / seconds, "seconds": seconds}))
    distributed.shutdown()


def launch(nproc: int, epochs: int) -> dict:
    from prunekit.distributed import torchrun_command

    threads = max(1, (torch.get_num_threads() if not torch.cuda.is_available() else 1) // nproc)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run(
            torchrun_command(nproc, __file__, "--worker", str(out), "--epochs", str(epochs)),
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
            stdout=subprocess.DEVNULL,
        )
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker), args.epochs)
        return
    device = "GPU" if torch.cuda.is_available() else "CPU"
    single, multi = launch(1, args.epochs), launch(args.nproc, args.epochs)
    print(f"retraining the demo U-Net, {args.epochs} epochs, {device}, {torch.get_num_threads()} threads in all\n")
    print(f"{'processes':>9} {'images/s':>10} {'ratio':>7}")
    print(f"{1:>9} {single['images_per_second']:10.1f} {1.0:7.2f}")
    ratio = multi["images_per_second"] / single["images_per_second"]
    print(f"{args.nproc:>9} {multi['images_per_second']:10.1f} {ratio:7.2f}")


if __name__ == "__main__":
    main()
