"""Measured latency: the median of repeated forward passes after warm-up, never an estimate."""
from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(models: Sequence[nn.Module], example: torch.Tensor, repeats: int = 10, warmup: int = 2) -> list[float]:
    """Median seconds per forward of each model on ``example``. The models take turns in every
    round, so a noisy machine slows them alike and the ratios stay fair."""
    device = example.device
    times: list[list[float]] = [[] for _ in models]
    states = [m.training for m in models]
    for m in models:
        m.eval()
    with torch.no_grad():
        for round_ in range(warmup + repeats):
            for i, model in enumerate(models):
                _sync(device)
                start = time.perf_counter()
                model(example)
                _sync(device)
                if round_ >= warmup:
                    times[i].append(time.perf_counter() - start)
    for m, training in zip(models, states):
        m.train(training)
    return [statistics.median(t) for t in times]
