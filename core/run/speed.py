"""How fast the pruned model runs where it is deployed: measured against the baseline in the run's
runtime (batch 1 and a training batch) and in every other runtime named or available here (batch
1), in turns, each speed-up with its interval — and a warning wherever it runs slower."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..cost.latency import measure_rounds, speedup
from ..errors import one_line
from ..plugin.manager import Manager
from ..seam import Runtime


def compared(names: Iterable[str] | str, plugins: Manager, runtime: Runtime) -> list[Runtime]:
    """The runtimes the report measures in besides ``runtime``: ``names``, or ``"all"`` registered."""
    chosen = plugins.names("runtime") if names == "all" else list(names)
    return [plugins.get("runtime", name) for name in chosen if name != runtime.name]


def measure_speed(
    teacher: nn.Module,
    student: nn.Module,
    example: torch.Tensor,
    batch: int,
    runtime: Runtime,
    others: list[Runtime],
    repeats: int = 10,
) -> list[dict[str, Any]]:
    """One row per runtime and batch size: milliseconds per forward of baseline and pruned, the
    speed-up with its interval — or why it was not measured."""
    one = example[:1]
    rows = []
    for rt, batches in [(runtime, sorted({1, batch})), *((other, [1]) for other in others)]:
        for size in batches:
            x = one.expand(size, *one.shape[1:]).contiguous()
            rows.append({"runtime": rt.name, "batch": size, **_measured(teacher, student, x, rt, repeats)})
    return rows


def _measured(teacher: nn.Module, student: nn.Module, x: torch.Tensor, runtime: Runtime, repeats: int) -> dict:
    why = runtime.available(x.device)
    if why is not None:
        return {"unavailable": why}
    try:
        base, pruned = measure_rounds([teacher, student], x, repeats=repeats, runtime=runtime)
    except Exception as exc:  # a runtime may fail on a model in any way (an op it cannot export, say)
        return {"unavailable": f"failed on this model ({one_line(exc)})"}
    measured = speedup(pruned, base)
    return {
        "version": runtime.version(),
        "baseline_ms": 1e3 * statistics.median(base),
        "pruned_ms": 1e3 * statistics.median(pruned),
        "speedup": measured.median,
        "low": measured.low,
        "high": measured.high,
    }


def slower(rows: list[dict[str, Any]]) -> list[str]:
    """A warning for each runtime and batch size where the pruned model measured slower."""
    return [
        f"the pruned model runs slower than the baseline in {r['runtime']} at batch {r['batch']} "
        f"({r['speedup']:.2f}×, {r['low']:.2f}–{r['high']:.2f}): keep channel counts aligned (pruning.align: auto), "
        f"or prune for time where it runs (pruning.runtime: {r['runtime']}, resource: latency)"
        for r in rows
        if "speedup" in r and r["speedup"] < 1
    ]
