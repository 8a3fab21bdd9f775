"""prunekit with what you already have: your own nn.Module, plain DataLoaders and a loss.

    python examples/python_api.py [--tiny] [--run-dir runs/python-api]

Trains a small classifier on random-texture data for a moment (your own training would go
there), prunes half of its MACs with retraining and distillation, exports it, and loads the
export back — from a model object, which needs a fresh instance of your class.
"""

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import prunekit as pk


class TextureNet(nn.Module):
    """Your network: prunekit knows nothing about it but the layers inside."""

    def __init__(self, classes: int = 3, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def textures(n: int, seed: int) -> TensorDataset:
    """Three classes: horizontal, vertical and diagonal stripes, with noise — as (image, label)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    waves = torch.stack([torch.sin(rows), torch.sin(cols), torch.sin((rows + cols) / 1.4)])
    images = waves[labels][:, None] + 0.5 * torch.randn(n, 1, 16, 16, generator=g)
    return TensorDataset(images, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a few batches only, for a quick check")
    parser.add_argument("--run-dir", default="runs/python-api")
    args = parser.parse_args()
    n = 64 if args.tiny else 1024
    train = DataLoader(textures(n, 0), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = DataLoader(textures(n // 4, 1), batch_size=32)
    model = TextureNet()

    config = {
        "run_dir": args.run_dir,
        "task": "classification",  # the loaders do not say which task their targets are for
        "train": {"epochs": 1 if args.tiny else 5, "optimizer": {"lr": 0.01}},
        "pruning": {"prune_away_percent": 50, "step": {"percent": 25}},
        "retrain": {"epochs_per_step": 1},
        "finetune": {"epochs": 1},
        "distillation": {"hinton": {"weight": 1.0, "args": {"T": 2.0}}},
    }
    pruner = pk.Pruner(
        config,
        model=model,
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
        example_input=torch.zeros(1, 1, 16, 16),
        progress=not args.tiny,
    )
    result = pruner.run()
    print(
        f"MACs kept: {result.summary['macs_percent']:.1f} %, top-1 {result.summary['baseline_metrics']['top1']:.3f} "
        f"-> {result.summary['metrics']['top1']:.3f}"
    )

    reloaded = pk.load(Path(args.run_dir), model=TextureNet())  # a fresh instance, built like the original
    x = next(iter(val))[0]
    with torch.no_grad():
        same = torch.equal(reloaded(x), result.model.eval()(x))
    print(f"exported and reloaded: {'identical outputs' if same else 'OUTPUTS DIFFER'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
