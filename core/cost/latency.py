"""Measured latency: the median of repeated forward passes after warm-up, never an estimate, run
in the runtime the model is deployed with (:class:`prunekit.seam.Runtime`; eager PyTorch where
none is named), models taking turns so that a noisy machine slows them alike.

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
import math
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..eager import eager
from ..errors import ConfigError, PrunekitError, one_line
from ..modes import eval_mode
from ..seam import Runtime

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


def measure(
    models: Sequence[nn.Module],
    example: torch.Tensor,
    repeats: int = 10,
    warmup: int = 2,
    runtime: Runtime | None = None,
) -> list[float]:
    """Median seconds per forward of each model on ``example``. The models take turns in every
    round, so a noisy machine slows them alike and the ratios stay fair."""
    return [statistics.median(t) for t in measure_rounds(models, example, repeats, warmup, runtime)]


def measure_rounds(
    models: Sequence[nn.Module],
    example: torch.Tensor,
    repeats: int = 10,
    warmup: int = 2,
    runtime: Runtime | None = None,
) -> list[list[float]]:
    """Seconds per forward of each model in each of ``repeats`` rounds (the models take turns), run
    as ``runtime`` runs them (eager PyTorch where none is given)."""
    with ExitStack() as modes:
        for m in models:
            modes.enter_context(eval_mode(m))
        return time_calls([prepared(runtime, m, example) for m in models], example.device, repeats, warmup)


def prepared(runtime: Runtime | None, model: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
    """``runtime``'s call of ``model`` on ``example`` (eager where none is given); a runtime that
    cannot run the model is a :class:`ConfigError` naming it."""
    if runtime is None:
        return eager(model, example)
    try:
        return runtime.prepare(model, example)
    except PrunekitError:
        raise
    except Exception as exc:  # a runtime may refuse a model in any way (an operator it cannot export)
        raise ConfigError(
            f"runtime {runtime.name!r} cannot run {type(model).__name__} ({one_line(exc)}); "
            "name another in pruning.runtime"
        ) from exc


def time_calls(
    calls: Sequence[Callable[[], Any]], device: torch.device, repeats: int = 10, warmup: int = 2
) -> list[list[float]]:
    """Seconds of each call in each of ``repeats`` rounds, the calls taking turns, after ``warmup``
    rounds (a compiling runtime compiles in its first)."""
    if device.type == "cpu":
        steady_allocator()
    times: list[list[float]] = [[] for _ in calls]
    for round_ in range(warmup + repeats):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            call()
            if round_ >= warmup:
                times[i].append(time.perf_counter() - start)
    return times


#: a speed-up whose interval is wider than this share of it is not told (the machine was busy)
TOO_BUSY = 0.25
#: how sure the interval of a measured speed-up is to hold the median speed-up
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Speedup:
    """A measured speed-up: the median of the rounds' ratios (each round compares two forwards
    run back to back), and an interval that holds the true median with :data:`CONFIDENCE`."""

    median: float
    low: float
    high: float

    @property
    def busy(self) -> bool:
        """Too wide an interval to tell a speed-up by: the machine was busy."""
        return self.high - self.low > TOO_BUSY * self.median

    def __str__(self) -> str:
        return f"{self.median:.2f}× ({self.low:.2f}–{self.high:.2f})"


def speedup(rounds: Sequence[float], base_rounds: Sequence[float]) -> Speedup:
    """The speed-up of ``rounds`` over ``base_rounds``, taken in turns, with its interval."""
    ratios = [b / t for b, t in zip(base_rounds, rounds)]
    low, high = median_interval(ratios)
    return Speedup(statistics.median(ratios), low, high)


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A distribution-free confidence interval of the median: the order statistics k and n + 1 − k,
    with k the largest count that a Binomial(n, ½) stays below with probability (1 − confidence)/2
    (the sign-test interval, e.g. Conover, *Practical Nonparametric Statistics*, 3.2). Below six
    values no such k exists at 95 %: the whole range is the interval."""
    ordered, n = sorted(values), len(values)
    tail, k, below = (1 - confidence) / 2, 0, 0.0
    while k < n // 2:
        below += math.comb(n, k) / 2**n  # P(Binomial(n, ½) <= k)
        if below > tail:
            break
        k += 1
    k = max(k, 1)
    return ordered[k - 1], ordered[n - k]
