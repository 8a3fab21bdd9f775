"""The rows a task plugin gives the report: baseline against pruned, in points."""

from __future__ import annotations

from collections.abc import Sequence


def metric_rows(
    baseline: dict[str, float],
    pruned: dict[str, float],
    summary: Sequence[tuple[str, str]],
    per_class: tuple[str, str],
    class_names: Sequence[str],
) -> list[list[str]]:
    """A task's report rows — label, baseline, pruned, change in points: the ``summary`` metrics
    (key, label), then one row per class for the keys ``prefix + index`` of ``per_class`` (prefix,
    label), named by ``class_names`` where they reach (``class 3`` where they do not)."""
    prefix, label = per_class
    labelled = list(summary)
    for key in sorted((k for k in baseline if k.startswith(prefix)), key=lambda k: int(k.removeprefix(prefix))):
        index = int(key.removeprefix(prefix))
        labelled.append((key, f"{label} {class_names[index] if index < len(class_names) else f'class {index}'}"))
    return [
        [text, f"{baseline[key]:.4f}", f"{pruned[key]:.4f}", f"{100 * (pruned[key] - baseline[key]):+.2f} pt"]
        for key, text in labelled
    ]
