"""The PNG plots of a run's report (matplotlib, an optional extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import ConfigError


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
    fig, ax = plt.subplots(figsize=(7, 4))
    x = [0] + [s["step"] for s in steps]
    ax.plot(x, [100.0] + [s["macs_percent"] for s in steps], "o-", color="tab:blue", label="MACs %")
    ax.set_xlabel("pruning step")
    ax.set_ylabel("MACs (% of baseline)", color="tab:blue")
    if metric in summary.get("baseline_metrics", {}) and all(metric in s for s in steps):
        twin = ax.twinx()
        twin.plot(x, [summary["baseline_metrics"][metric]] + [s[metric] for s in steps], "s--", color="tab:red")
        twin.set_ylabel(f"validation {label}", color="tab:red")
    ax.set_title(f"MACs and {label} per pruning step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _channels_plot(plt: Any, path: Path, kept: list[dict[str, Any]]) -> None:
    fig, ax = plt.subplots(figsize=(max(7, 0.3 * len(kept)), 4))
    idx = range(len(kept))
    ax.bar(idx, [k["original"] for k in kept], color="lightgray", label="original")
    ax.bar(idx, [k["kept"] for k in kept], color="tab:blue", label="pruned")
    ax.set_xticks(list(idx), [k["name"] for k in kept], rotation=90, fontsize=6)
    ax.set_ylabel("output channels")
    ax.set_title("Channels kept per layer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _blocks_plot(plt: Any, path: Path, blocks: dict[str, dict[str, int]]) -> None:
    names = list(blocks.get("baseline", {}))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.4
    for offset, (label, values) in zip((-width / 2, width / 2), blocks.items()):
        total = sum(values.values()) or 1
        ax.bar(
            [i + offset for i in range(len(names))], [100 * values.get(n, 0) / total for n in names], width, label=label
        )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of the model's MACs (%)")
    ax.set_title("MACs per block")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
