"""Measured latency: the median of repeated forward passes after warm-up, never an estimate."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from contextlib import ExitStack

import torch
from torch import nn

from ..graph.recording import eval_mode


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(models: Sequence[nn.Module], example: torch.Tensor, repeats: int = 10, warmup: int = 2) -> list[float]:
    """Median seconds per forward of each model on ``example``. The models take turns in every
    round, so a noisy machine slows them alike and the ratios stay fair."""
    device = example.device
    times: list[list[float]] = [[] for _ in models]
    with ExitStack() as modes, torch.no_grad():
        for m in models:
            modes.enter_context(eval_mode(m))
        for round_ in range(warmup + repeats):
            for i, model in enumerate(models):
                _sync(device)
                start = time.perf_counter()
                model(example)
                _sync(device)
                if round_ >= warmup:
                    times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]
