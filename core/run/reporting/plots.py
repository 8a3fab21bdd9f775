"""The PNG plots of a run's report (matplotlib, an optional extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...run_files import staged


def plot(
    run_dir: Path, summary: dict[str, Any], steps: list[dict[str, Any]], metric: str, label: str, required: bool
) -> bool:
    """Write ``steps.png``, ``channels.png`` and ``blocks.png``; ``False`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if required:
            raise ConfigError("prunekit report needs matplotlib: pip install 'prunekit[plot]'") from None
        return False
    _steps_plot(plt, run_dir / "steps.png", summary, steps, metric, label)
    _channels_plot(plt, run_dir / "channels.png", summary.get("kept", []))
    _blocks_plot(plt, run_dir / "blocks.png", summary.get("blocks", {}))
    return True


def _steps_plot(
    plt: Any, path: Path, summary: dict[str, Any], steps: list[dict[str, Any]], metric: str, label: str
) -> None:
    """MACs and the task's metric after every step, from the baseline (0) to the fine-tuned model."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4))
    x = [0] + [s["step"] for s in steps]
    ax.plot(x, [100.0] + [s["macs_percent"] for s in steps], "o-", color="tab:blue", label="MACs %")
    ax.set_xlabel("pruning step (0: baseline)")
    ax.set_ylabel("MACs (% of baseline)", color="tab:blue")
    ax.set_ylim(0, 105)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    baseline, final = summary.get("baseline_metrics", {}), summary.get("metrics", {})
    if metric in baseline and all(metric in s for s in steps):
        twin = ax.twinx()
        twin.plot(x, [baseline[metric]] + [s[metric] for s in steps], "s--", color="tab:red", label=f"{label} per step")
        if metric in final:
            twin.plot([x[-1] + 0.5], [final[metric]], "*", color="tab:red", markersize=14, label=f"{label} fine-tuned")
            twin.annotate("fine-tuned", (x[-1] + 0.5, final[metric]), textcoords="offset points", xytext=(0, 8),
                          ha="center", fontsize=9, color="tab:red")  # fmt: skip
        twin.set_ylabel(f"validation {label}", color="tab:red")
        twin.legend(loc="lower left", fontsize=9)
    ax.set_title(f"MACs and {label} per pruning step")
    fig.tight_layout()
    _save(plt, fig, path)


def _channels_plot(plt: Any, path: Path, kept: list[dict[str, Any]]) -> None:
    """Output channels of every layer, before and after: one row per layer, names readable."""
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.28 * len(kept) + 1.2)))
    rows = list(range(len(kept)))[::-1]  # the first layer on top
    ax.barh(rows, [k["original"] for k in kept], color="lightgray", label="baseline")
    ax.barh(rows, [k["kept"] for k in kept], color="tab:blue", label="kept")
    ax.set_yticks(rows, [k["name"] for k in kept], fontsize=9)
    ax.set_xlabel("output channels")
    ax.set_title("Channels kept per layer")
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    _save(plt, fig, path)


def _blocks_plot(plt: Any, path: Path, blocks: dict[str, dict[str, float]]) -> None:
    """MACs of every block, baseline and pruned, in the same units."""
    names = list(blocks.get("baseline", {}))
    scale, unit = _unit(max(blocks.get("baseline", {}).values(), default=1))
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.35 * len(names) + 1.2)))
    height = 0.4
    rows = list(range(len(names)))[::-1]
    for offset, (label, values) in zip((height / 2, -height / 2), blocks.items()):
        ax.barh([r + offset for r in rows], [values.get(n, 0) / scale for n in names], height, label=label)
    ax.set_yticks(rows, names, fontsize=9)
    ax.set_xlabel(f"MACs ({unit})")
    ax.set_title("MACs per block")
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: Path) -> None:
    """Write the figure beside ``path`` and rename it into place: a link planted at ``path`` is
    replaced, never written through."""
    with staged(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _unit(largest: float) -> tuple[float, str]:
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if largest >= scale:
            return scale, unit
    return 1.0, "MACs"
