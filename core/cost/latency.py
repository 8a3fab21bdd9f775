"""Measured latency: the median of repeated forward passes after warm-up, never an estimate.

On Linux CPUs the first measurement puts glibc's allocator in a steady regime (:func:`steady_allocator`):
by default it maps every large tensor freshly and unmaps it when freed, so each forward pays page
faults whose cost depends on the history of allocation sizes, not on the layer — on 2 cores a 1×1
convolution 32 → 32 at 192×320 measured 6–12 ms or 1.7 ms depending on what ran before it, which no
per-layer model can predict. With large blocks kept on the heap (what jemalloc or tcmalloc, the usual
advice for CPU inference, also do) the same convolution measures 1.6–2.1 ms whatever came before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
import statistics
import time
from collections.abc import Sequence
from contextlib import ExitStack

import torch
from torch import nn

from ..modes import eval_mode


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: glibc's mallopt parameters, and the largest mmap threshold it accepts on 64-bit systems
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX = -1, -3, 32 * 2**20


@functools.cache
def steady_allocator() -> bool:
    """Keep freed blocks up to 32 MiB on glibc's heap for reuse, and the heap from shrinking, for
    the rest of the process (Linux with glibc only; elsewhere nothing changes). The cost is memory
    held at its peak — tensors' memory is reused rather than handed back. True when it took effect."""
    name = ctypes.util.find_library("c") if platform.system() == "Linux" else None
    if name is None or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(name).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def measure(models: Sequence[nn.Module], example: torch.Tensor, repeats: int = 10, warmup: int = 2) -> list[float]:
    """Median seconds per forward of each model on ``example``. The models take turns in every
    round, so a noisy machine slows them alike and the ratios stay fair."""
    return [statistics.median(t) for t in measure_rounds(models, example, repeats, warmup)]


def measure_rounds(
    models: Sequence[nn.Module], example: torch.Tensor, repeats: int = 10, warmup: int = 2
) -> list[list[float]]:
    """Seconds per forward of each model in each of ``repeats`` rounds (the models take turns)."""
    device = example.device
    if device.type == "cpu":
        steady_allocator()
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
    return times


#: a speed-up whose rounds spread over more than this share of it is not told (the machine was busy)
TOO_BUSY = 0.25


def speedup(rounds: Sequence[float], base_rounds: Sequence[float]) -> tuple[float, float]:
    """(the median speed-up over the base, the interquartile spread of the rounds' speed-ups
    relative to it): each round's ratio compares two forwards run back to back."""
    ratios = sorted(b / t for b, t in zip(base_rounds, rounds))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    median = statistics.median(ratios)
    return median, (quartiles[2] - quartiles[0]) / median
