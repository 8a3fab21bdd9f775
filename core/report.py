"""What a run did: tables (channels kept, baseline against pruned), the Markdown report and its
plots (matplotlib, an optional extra)."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cost import CostReport, block_of
from .errors import ConfigError
from .files import atomic_write_text, read_json
from .text import human, render_table


@dataclass
class Kept:
    name: str
    block: str
    original: int
    kept: int

    @property
    def percent(self) -> float:
        return 100.0 * self.kept / self.original if self.original else 100.0


def kept_channels(original: CostReport, pruned: CostReport, blocks: tuple[str, ...]) -> list[Kept]:
    """Output channels of every weighted layer (conv, linear), before and after."""
    now = {row.name: row for row in pruned.layers}
    return [Kept(row.name, block_of(row.name, blocks), row.out_channels, now[row.name].out_channels)
            for row in original.layers if row.kind in ("conv", "linear") and row.name in now]


def kept_table(rows: list[Kept]) -> str:
    body = [[r.name, r.block, str(r.original), str(r.kept), f"{r.percent:.0f}%"] for r in rows]
    text = render_table(["layer", "block", "channels", "kept", "kept %"], body, right=(2, 3, 4))
    body = block_rows([r.__dict__ for r in rows])
    return text + "\n\n" + render_table(["block", "channels", "kept", "kept %"], body, right=(1, 2, 3))


def block_rows(kept: list[dict[str, Any]]) -> list[list[str]]:
    """Per block: output channels originally, kept, and the percent kept."""
    blocks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in kept:
        blocks[r["block"]][0] += r["original"]
        blocks[r["block"]][1] += r["kept"]
    return [[b, str(o), str(k), f"{100.0 * k / o:.0f}%"] for b, (o, k) in blocks.items()]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Baseline against pruned: cost, measured latency, quality."""
    rows = [["MACs", human(summary["original_macs"]), human(summary["macs"]), f"{summary['macs_percent']:.1f}%"],
            ["params", human(summary["original_params"]), human(summary["params"]), f"{summary['params_percent']:.1f}%"]]
    latency = summary.get("latency", {})
    for key in sorted(k for k in latency if k.startswith("baseline_batch")):
        batch = key.removeprefix("baseline_batch")
        base, pruned = latency[key], latency[f"pruned_batch{batch}"]
        rows.append([f"latency, batch {batch}", _ms(base), _ms(pruned), f"{base / pruned:.2f}× faster"])
    if "metrics" in summary:
        base, pruned = summary["baseline_metrics"], summary["metrics"]
        rows.append(["mIoU", f"{base['miou']:.4f}", f"{pruned['miou']:.4f}", f"{100 * (pruned['miou'] - base['miou']):+.2f} pt"])
        names = summary.get("class_names") or []
        for key in sorted(k for k in base if k.startswith("iou_")):
            index = int(key.removeprefix("iou_"))
            label = names[index] if index < len(names) else key
            rows.append([f"IoU {label}", f"{base[key]:.4f}", f"{pruned[key]:.4f}", f"{100 * (pruned[key] - base[key]):+.2f} pt"])
    return rows


def summary_table(summary: dict[str, Any]) -> str:
    return render_table(["", "baseline", "pruned", "change"], summary_rows(summary), right=(1, 2, 3))


def _markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's summary and its step records."""
    summary = read_json(Path(run_dir) / "summary.json", "run summary (is the run finished?)")
    log = Path(run_dir) / "log.jsonl"
    steps = [json.loads(line) for line in log.read_text().splitlines() if '"event": "step"' in line] if log.is_file() else []
    return summary, steps


def write_report(run_dir: Path, plots: bool | None = None) -> Path:
    """``report.md`` beside the run's files, with PNG plots when matplotlib is installed
    (``plots=True`` requires it)."""
    run_dir = Path(run_dir)
    summary, steps = read_run(run_dir)
    have_plots = _plot(run_dir, summary, steps, required=plots is True) if plots is not False else False
    parts = [f"# prunekit run `{run_dir}`", "", _markdown_table(["", "baseline", "pruned", "change"], summary_rows(summary))]
    if steps:
        parts += ["", "## Pruning steps", "", _markdown_table(
            ["step", "MACs %", "params %", "removed", "at limit", "mIoU"],
            [[str(s["step"]), f"{s['macs_percent']:.2f}", f"{s['params_percent']:.2f}", str(s["removed"]),
              str(s["at_limit"]), f"{s['miou']:.4f}" if "miou" in s else "-"] for s in steps])]
    blocks = block_rows(summary.get("kept", []))
    if blocks:
        parts += ["", "## Output channels kept per block", "", _markdown_table(["block", "channels", "kept", "kept %"], blocks)]
    if have_plots:
        parts += ["", "## Plots", "", "![MACs and mIoU per step](steps.png)", "",
                  "![channels per layer](channels.png)", "", "![MACs per block](blocks.png)"]
    else:
        parts += ["", "(plots need matplotlib: `pip install 'prunekit[plot]'`, then `prunekit report` again)"]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path


def _plot(run_dir: Path, summary: dict[str, Any], steps: list[dict[str, Any]], required: bool) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if required:
            raise ConfigError("prunekit report needs matplotlib: pip install 'prunekit[plot]'") from None
        return False
    _steps_plot(plt, run_dir / "steps.png", summary, steps)
    _channels_plot(plt, run_dir / "channels.png", summary.get("kept", []))
    _blocks_plot(plt, run_dir / "blocks.png", summary.get("blocks", {}))
    return True


def _steps_plot(plt: Any, path: Path, summary: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    x = [0] + [s["step"] for s in steps]
    ax.plot(x, [100.0] + [s["macs_percent"] for s in steps], "o-", color="tab:blue", label="MACs %")
    ax.set_xlabel("pruning step")
    ax.set_ylabel("MACs (% of baseline)", color="tab:blue")
    if "baseline_metrics" in summary and all("miou" in s for s in steps):
        twin = ax.twinx()
        twin.plot(x, [summary["baseline_metrics"]["miou"]] + [s["miou"] for s in steps], "s--", color="tab:red")
        twin.set_ylabel("validation mIoU", color="tab:red")
    ax.set_title("MACs and mIoU per pruning step")
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
        ax.bar([i + offset for i in range(len(names))], [100 * values.get(n, 0) / total for n in names], width, label=label)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of the model's MACs (%)")
    ax.set_title("MACs per block")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
