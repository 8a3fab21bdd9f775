"""Prune the demo's U-Net inside your own training loop: plain PyTorch, with a learning-rate
schedule and bf16 autocast on the CPU, written as you would write it anyway.

prunekit cuts the model between your epochs and keeps what a run keeps — the budget, the layer
limits, the guard that rolls back a step that breaks the model, checkpoints, resume, the export
and the report. You train, with the distillation loss it hands you added to yours.

    python examples/own_loop.py                        # the demo's budget and epochs (a few minutes)
    python examples/own_loop.py --resume               # continue after a kill
    python examples/own_loop.py --tiny                 # a few batches only, for a quick check
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import prunekit as pk


def train_epochs(model, loader, val, epochs, lr, extra_loss=None, parameters=None, cosine=True) -> float:
    """Adam, with a cosine schedule over ``epochs`` (or a constant rate); the loss is cross-entropy
    plus Dice, plus ``extra_loss(images, logits)`` when given; bf16 autocast on the CPU. Keeps the
    weights of the epoch with the best validation mIoU, and returns that mIoU."""
    optimizer = torch.optim.Adam(parameters or model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs)) if cosine else None
    dice = pk.get("task_loss", "generalized_dice")
    best, best_state = -1.0, None
    for _ in range(epochs):
        model.train()
        for batch in loader:
            images, masks = batch["image"], batch["target"]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(images).float()
                loss = F.cross_entropy(logits, masks) + 0.5 * dice(logits, {"target": masks})
                if extra_loss is not None:
                    loss = loss + extra_loss(images, logits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        score = miou(model, val)
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
    if best_state is None:  # no epoch: the model as it is
        return miou(model, val)
    model.load_state_dict(best_state)
    return best


@torch.no_grad()
def miou(model: nn.Module, loader: DataLoader, n_classes: int = 4) -> float:
    """Mean IoU over the classes present in the labels or the predictions."""
    model.eval()
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.long)
    for batch in loader:
        predicted = model(batch["image"]).argmax(1)
        confusion += torch.bincount(
            batch["target"].flatten() * n_classes + predicted.flatten(), minlength=n_classes**2
        ).view(n_classes, n_classes)
    tp = confusion.diagonal().double()
    union = confusion.sum(0) + confusion.sum(1) - confusion.diagonal()
    return float((tp / union.double())[union > 0].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/own-loop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="a few batches only, for a quick check")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    n_train, n_val, size = (32, 16, [32, 48]) if args.tiny else (384, 128, [64, 96])
    splits = pk.get("dataset", "synthetic_eyes", size=size, n_train=n_train, n_val=n_val, seed=args.seed)
    train = DataLoader(splits.train, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(args.seed))
    val = DataLoader(splits.val, batch_size=32)

    model = pk.get("model", "unet", in_channels=1, n_classes=4, width=16, activation="leaky_relu")
    baseline = Path(args.run_dir + "-baseline.pt")
    if baseline.is_file():  # trained before a kill: the same baseline, so the run can resume
        model.load_state_dict(torch.load(baseline, weights_only=True))
    else:
        train_epochs(model, train, val, epochs=1 if args.tiny else 7, lr=3e-3)
        baseline.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), baseline)

    config = {  # the demo's budget; the demo's epochs, trained here
        "seed": args.seed,
        "run_dir": args.run_dir,
        "task": "segmentation",
        "pruning": {"prune_away_percent": 60, "step": {"percent": 20}, "layer_limit_percent": 85,
                    "block_limit_percent": 85, "calibration_batches": 4,
                    # a net trained one epoch swings from step to step: the quick check runs unguarded
                    **({"max_drop": None, "class_floor": None} if args.tiny else {})},
        "retrain": {"epochs_per_step": 1},
        "distillation": {"hinton": {"weight": 1.0, "args": {"T": 1.0}}},
    }  # fmt: skip
    pruner = pk.Pruner(config, model=model, train=train, val=val, progress=not args.tiny)
    for step in pruner.steps(resume=args.resume):
        kept = train_epochs(step.model, train, val, step.epochs, 1e-3, step.distillation, step.parameters(), False)
        if step.last and not args.tiny:  # the demo's fine-tuning, once the budget is met
            kept = train_epochs(step.model, train, val, 6, 1e-3, step.distillation, step.parameters())
        step.report(miou=kept)
        print(f"step {step.step}: {step.cost.macs / 1e6:.1f} M MACs, mIoU {step.metrics['miou']:.4f}", flush=True)

    print(pruner.result)
    reloaded = pk.load(args.run_dir, model=pk.get("model", "unet", in_channels=1, n_classes=4, width=16,
                                                  activation="leaky_relu"))  # fmt: skip
    x = next(iter(val))["image"]
    same = torch.equal(reloaded(x), pruner.result.model.eval()(x))
    print(f"final mIoU {pruner.result.summary['metrics']['miou']:.4f}; exported and reloaded: "
          f"{'identical outputs' if same else 'OUTPUTS DIFFER'}")  # fmt: skip
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
