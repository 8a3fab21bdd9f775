"""Where a run's records go: ``run_dir/log.jsonl`` (the run's own record, read by reports), the
console (a row per pruning step, a line per epoch), the configured logger plugins, and the
plugins' lifecycle events. Only the main process writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ... import distributed
from ...cost.formatting import human
from ...errors import CheckpointError
from ...plugin.manager import Manager
from ...run_files import LOG, open_to_append, storage
from ...run_records import EpochRecord, RunInfo

STEP_COLUMNS = ("step", "MACs %", "params %", "removed", "at limit", "{metric}", "time")


class Console:
    """Progress lines written through tqdm, so that progress bars stay intact."""

    def __init__(self, metric: str, label: str) -> None:
        self.metric, self.label = metric, label
        self.header_done = False

    def log(self, record: dict[str, Any]) -> None:
        event = record.get("event")
        value = f"{record[self.metric]:.4f}" if self.metric in record else "-"
        if event == "step":
            if not self.header_done:
                tqdm.write(" ".join(f"{c.format(metric=self.label):>9}" for c in STEP_COLUMNS))
                self.header_done = True
            timed = (
                f"  {record['latency_ms']:.1f} ms, speed-up {record['speedup']:.2f}× ({record['speedup_low']:.2f}–"
                f"{record['speedup_high']:.2f}; predicted {record['predicted_speedup']:.2f}×)"
                if record.get("predicted_speedup") is not None
                else ""
            )
            tqdm.write(
                f"{record['step']:>9} {record['macs_percent']:>9.2f} {record['params_percent']:>9.2f} "
                f"{record['removed']:>9} {record['at_limit']:>9} {value:>9} {record['seconds']:>8.1f}s{timed}"
            )
        elif event == "epoch":
            tqdm.write(self.epoch_line(record))
        elif event in ("stop", "note"):
            tqdm.write(record["message"])
        elif event == "warning":
            tqdm.write(f"warning: {record['message']}")
        elif event == "rollback":
            tqdm.write(
                f"step {record['step']} rolled back: {record['reason']}; it cut {record['layers']}. "
                f"Trying again with half the step ({record['failures']} of {record['retries'] + 1} tries)"
            )
        elif event == "summary":
            tqdm.write(
                f"done: {human(record['macs'])} MACs ({record['macs_percent']:.1f} %), "
                f"{human(record['params'])} params ({record['params_percent']:.1f} %)"
            )

    def epoch_line(self, record: dict[str, Any]) -> str:
        """``phase step N epoch E: loss L (term …)  train M  val M``, and the distillation scales
        of ``balance: auto`` on a phase's first epoch."""
        step = f" step {record['step']}" if record.get("step") else ""
        terms = [f"{k.partition('_')[2]} {v:.4f}" for k, v in record.items() if k.startswith(("loss_", "distill_"))]
        line = f"{record['phase']}{step} epoch {record['epoch']}: loss {record['loss']:.4f}"
        line += f" ({', '.join(terms)})" if len(terms) > 1 else ""
        for prefix, key in (("train", f"train_{self.metric}"), ("val", self.metric)):
            if key in record:
                line += f"  {prefix} {self.label} {record[key]:.4f}"
        scales = {k.partition("_")[2]: v for k, v in record.items() if k.startswith("scale_")}
        if scales and record["epoch"] == 1:
            line += "  (distillation balanced: " + ", ".join(f"{k} ×{v:.3g}" for k, v in scales.items()) + ")"
        return line


class RunLog:
    """Every record of a run, to every place it goes; closing it ends the run's hold on its folder
    (``lock``, an object with ``release()``)."""

    def __init__(
        self, run_dir: Path, plugins: Manager, loggers: list[Any], console: Console | None, lock: Any = None
    ) -> None:
        self.plugins = plugins
        self.main = distributed.is_main()
        self.loggers = loggers if self.main else []
        self.console = console if self.main else None
        self.lock = lock
        self.path = run_dir / LOG
        self.handle = open_to_append(self.path) if self.main else None
        self.info: RunInfo | None = None  # the run, for event hooks, once it is prepared

    def record(self, record: dict[str, Any]) -> None:
        if self.handle is None:
            return
        with storage(self.path, "write"):
            self.handle.write(json.dumps(record, default=float) + "\n")
            self.handle.flush()
        if self.console:
            self.console.log(record)
        for logger in self.loggers:
            logger.log(record)

    def epoch(self, trainer: Any, record: dict[str, Any]) -> None:
        """An epoch's record, and the ``epoch_done`` event."""
        self.record(record)
        self.notify("epoch_done", record=EpochRecord.of(record))

    def notify(self, event: str, **records: Any) -> None:
        """A lifecycle event for the plugins, with the run's :class:`RunInfo` (main process only;
        none before the run has one: the baseline's training is no event)."""
        if self.main and self.info is not None:
            self.plugins.notify(event, run=self.info, **records)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
        self.loggers = []
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def read_records(run_dir: Path, event: str) -> list[dict[str, Any]]:
    """The records of one event in a run's log."""
    path = Path(run_dir) / LOG
    if not path.is_file():
        return []
    with storage(path, "read"):
        text = path.read_text(errors="replace")
    return [r for r in _records(path, text) if r.get("event") == event]


def _records(path: Path, text: str) -> list[dict[str, Any]]:
    """The log's records; a last line cut short (a write the disk or a kill interrupted) is left
    out, any other line that is no JSON object is a CheckpointError naming it."""
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if number == len(lines):  # no newline after it: the write never finished
                break
            record = None
        if not isinstance(record, dict):
            raise CheckpointError(f"{str(path)!r}, line {number}: not a log record (a JSON object); restore the log")
        records.append(record)
    return records


def read_steps(run_dir: Path) -> list[dict[str, Any]]:
    """The step records of a run's log."""
    return read_records(run_dir, "step")
