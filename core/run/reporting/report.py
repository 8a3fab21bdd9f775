"""What a run did: tables (channels kept, baseline against pruned), the Markdown report and its
plots (matplotlib, an optional extra)."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...cost.counting import CostReport, block_of
from ...cost.formatting import human, render_table
from ...cost.latency import Speedup
from ...errors import CheckpointError, PrunekitError, one_line
from ...plugin.manager import Manager, manager
from ...plugin.protocols import Task
from ...run_files import atomic_write_text, storage
from ..storage.atomic_files import read_json
from .plots import plot
from .run_log import read_records, read_steps


@dataclass
class Kept:
    name: str
    block: str
    original: int
    kept: int

    @property
    def percent(self) -> float:
        return 100.0 * self.kept / self.original if self.original else 100.0


def kept_layers(original: CostReport, pruned: CostReport, blocks: tuple[str, ...]) -> list[Kept]:
    """Output channels of every weighted layer (conv, linear), before and after."""
    now = {row.name: row for row in pruned.layers}
    return [
        Kept(row.name, block_of(row.name, blocks), row.out_channels, now[row.name].out_channels)
        for row in original.layers
        if row.kind in ("conv", "linear") and row.name in now
    ]


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


def speed_rows(speed: list[dict[str, Any]]) -> list[list[str]]:
    """Per runtime and batch size: milliseconds per forward, baseline and pruned, and the measured
    speed-up with its interval — "too busy to tell" where the interval is too wide to tell by
    (a busy machine), and why where a runtime could not measure."""
    rows = []
    for r in speed:
        label = f"latency, {r['runtime']}, batch {r['batch']}"
        if "speedup" not in r:
            rows.append([label, "-", "-", f"not measured: {r['unavailable']}"])
            continue
        measured = Speedup(r["speedup"], r.get("low", r["speedup"]), r.get("high", r["speedup"]))
        told = "slower" if measured.median < 1 else "faster"
        change = f"too busy to tell: {measured}" if measured.busy else f"{measured} {told}"
        rows.append([label, f"{r['baseline_ms']:.1f} ms", f"{r['pruned_ms']:.1f} ms", change])
    return rows


def _former_latency(latency: dict[str, float]) -> list[dict[str, Any]]:
    """The eager measurements of a run summarised before runtimes were named (no intervals kept)."""
    batches = sorted(int(k.removeprefix("baseline_batch")) for k in latency if k.startswith("baseline_batch"))
    return [
        {"runtime": "eager", "batch": b, "baseline_ms": 1e3 * latency[f"baseline_batch{b}"],
         "pruned_ms": 1e3 * latency[f"pruned_batch{b}"], "speedup": latency[f"speedup_batch{b}"]}
        for b in batches
    ]  # fmt: skip


def summary_rows(summary: dict[str, Any], task: Task | None) -> list[list[str]]:
    """Baseline against pruned: cost, measured latency, and the task's metrics."""
    custom = summary.get("custom_cost", {})
    label = {
        r: f"{name} (your cost)" if custom.get(r) else name for r, name in (("macs", "MACs"), ("params", "params"))
    }
    rows = [
        [label[k], human(summary[f"original_{k}"]), human(summary[k]), f"{summary[f'{k}_percent']:.1f} % kept"]
        for k in ("macs", "params")
    ]
    rows += speed_rows(summary.get("speed") or _former_latency(summary.get("latency", {})))
    if task is not None and summary.get("metrics"):
        rows += task.report_rows(summary["baseline_metrics"], summary["metrics"], summary.get("class_names") or [])
    return rows


def task_of(summary: dict[str, Any], plugins: Manager | None = None) -> Task | None:
    """The task plugin that scored a run (``None`` for a run without one)."""
    name = summary.get("task")
    return (plugins or manager()).get("task", name) if name else None


def summary_table(summary: dict[str, Any], task: Task | None) -> str:
    return render_table(["", "baseline", "pruned", "change"], summary_rows(summary, task), right=(1, 2, 3))


def _markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


#: per step, with a latency table: measured time, measured speed-up (its interval) and the prediction
LATENCY_COLUMNS = ("latency ms", "speed-up", "predicted")


def _latency_cells(step: dict[str, Any]) -> list[str]:
    def cell(key: str, form: str) -> str:
        return form.format(step[key]) if step.get(key) is not None else "-"

    measured = cell("speedup", "{:.2f}×")
    if step.get("speedup_low") is not None:
        measured += f" ({step['speedup_low']:.2f}–{step['speedup_high']:.2f})"
    return [cell("latency_ms", "{:.1f}"), measured, cell("predicted_speedup", "{:.2f}×")]


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's summary and its step records."""
    summary = read_json(Path(run_dir) / "summary.json", "run summary (is the run finished?)")
    if not isinstance(summary, dict):
        raise CheckpointError(f"{str(Path(run_dir) / 'summary.json')!r} is not a run summary (a JSON object)")
    return summary, read_steps(run_dir)


@contextlib.contextmanager
def as_a_run_wrote(run_dir: Path) -> Iterator[None]:
    """Reading a run's files inside: a summary or log record whose fields are not what a run
    writes (a key missing, a number that is text) is one CheckpointError, not a traceback."""
    try:
        yield
    except PrunekitError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise CheckpointError(
            f"{str(run_dir)!r}: summary.json or log.jsonl does not hold what a prunekit run writes "
            f"({type(exc).__name__}: {one_line(exc)}); restore them, or run the config again"
        ) from None


def write_report(run_dir: Path, plots: bool | None = None, plugins: Manager | None = None) -> Path:
    """``report.md`` beside the run's files, with PNG plots when matplotlib is installed
    (``plots=True`` requires it)."""
    run_dir = Path(run_dir)
    with as_a_run_wrote(run_dir):
        return _write_report(run_dir, plots, plugins)


def _write_report(run_dir: Path, plots: bool | None, plugins: Manager | None) -> Path:
    summary, steps = read_run(run_dir)
    task = task_of(summary, plugins)
    metric, label = (task.best_metric, task.best_label) if task else ("", "")
    with storage(run_dir, "write the plots into"):
        have_plots = plot(run_dir, summary, steps, metric, label, plots is True) if plots is not False else False
    table = _markdown_table(["", "baseline", "pruned", "change"], summary_rows(summary, task))
    parts = [f"# prunekit run `{run_dir}`", "", table]
    if summary.get("warnings"):
        parts += ["", "## Warnings", "", *(f"- {w}" for w in summary["warnings"])]
    timed = any("latency_ms" in s for s in steps)
    if steps:
        parts += [
            "",
            "## Pruning steps",
            "",
            _markdown_table(
                ["step", "MACs %", "params %", "removed", "at limit", label or "metric", *LATENCY_COLUMNS[: timed * 3]],
                [
                    [
                        str(s["step"]),
                        f"{s['macs_percent']:.2f}",
                        f"{s['params_percent']:.2f}",
                        str(s["removed"]),
                        str(s["at_limit"]),
                        f"{s[metric]:.4f}" if metric in s else "-",
                        *_latency_cells(s)[: timed * 3],
                    ]
                    for s in steps
                ],
            ),
        ]
    rollbacks = read_records(run_dir, "rollback")
    if rollbacks:
        parts += [
            "",
            "## Steps rolled back by the guard",
            "",
            _markdown_table(
                ["step", "why", "what it cut"], [[str(r["step"]), r["reason"], r["layers"]] for r in rollbacks]
            ),
        ]
    blocks = block_rows(summary.get("kept", []))
    if blocks:
        parts += [
            "",
            "## Output channels kept per block",
            "",
            _markdown_table(["block", "channels", "kept", "kept %"], blocks),
        ]
    if have_plots:
        parts += [
            "",
            "## Plots",
            "",
            f"![MACs and {label} per step](steps.png)",
            "",
            "![channels per layer](channels.png)",
            "",
            "![MACs per block](blocks.png)",
        ]
    else:
        parts += ["", "(plots need matplotlib: `pip install 'prunekit[plot]'`, then `prunekit report` again)"]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path
