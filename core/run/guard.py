"""The guard on every step: a step that costs more than ``max_drop`` points of the task's metric,
or empties a class that the baseline predicted, is rolled back and tried again smaller."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Guard:
    """``max_drop``: points (metric × 100) the task's ``metric`` may lose against the baseline
    (``None``: no limit); ``class_floor``: a class whose metric (``class_prefix`` + index) was at
    least this in the baseline must stay at least this — below it, the class is as good as gone
    (``None``: no check)."""

    metric: str
    max_drop: float | None = 5.0
    class_floor: float | None = 0.05
    class_prefix: str | None = None

    def broken(self, baseline: dict[str, float], now: dict[str, float]) -> str | None:
        """Why the metrics ``now`` break the guard against ``baseline``, or ``None``. A metric the
        baseline has that is no finite number now breaks it (a model whose output diverged)."""
        if self.metric in now and not math.isfinite(now[self.metric]) and self.metric in baseline:
            return f"{self.metric} is {now[self.metric]} (a model whose output is no longer finite?)"
        if self.max_drop is not None and self.metric in baseline and self.metric in now:
            drop = 100.0 * (baseline[self.metric] - now[self.metric])
            if drop > self.max_drop:
                return (
                    f"{self.metric} fell from {baseline[self.metric]:.4f} to {now[self.metric]:.4f}, "
                    f"{drop:.1f} points (max_drop {self.max_drop:g})"
                )
        if self.class_floor is None or self.class_prefix is None:
            return None
        lost = [
            f"{key.removeprefix(self.class_prefix)} ({key} {baseline[key]:.3f} → {value:.3f})"
            for key, value in now.items()
            if key.startswith(self.class_prefix)
            and not math.isnan(baseline.get(key, math.nan))
            and baseline[key] >= self.class_floor > value
        ]
        if lost:
            return f"class {', '.join(lost)} fell below class_floor {self.class_floor:g}"
        return None
