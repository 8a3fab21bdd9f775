"""Built-in loggers besides the run's own console lines and ``log.jsonl``: a CSV table of the
records of one event, and TensorBoard scalars (an optional extra)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunekit.plugin import ConfigError, NoArgs, Spec, check_name, field, hookimpl, open_to_append, run_file


@dataclass
class CsvArgs:
    filename: str = field("steps.csv", doc="file in the run directory")
    event: str = field("step", doc="which records: step, epoch, summary, …")

    def check(self, path: str) -> None:
        check_name(self.filename, f"{path}.filename")


class Csv:
    """The records of one event as CSV rows in the run directory; the columns are the first
    record's keys (later keys that are new are left out)."""

    def __init__(self, run_dir: Path | str, filename: str = "steps.csv", event: str = "step") -> None:
        self.path, self.event = run_file(run_dir, filename, "logging.csv.filename"), event
        self.handle: Any = None
        self.writer: csv.DictWriter | None = None

    def log(self, record: dict[str, Any]) -> None:
        if record.get("event") != self.event:
            return
        if self.writer is None:
            self.handle = open_to_append(self.path, newline="")
            self.writer = csv.DictWriter(self.handle, fieldnames=list(record), extrasaction="ignore")
            if self.handle.tell() == 0:
                self.writer.writeheader()
        self.writer.writerow(record)
        self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


class TensorBoard:
    """Scalars per step and per epoch in ``run_dir/tensorboard`` (``pip install prunekit[tensorboard]``)."""

    def __init__(self, run_dir: Path | str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "logger 'tensorboard' needs the tensorboard package: pip install 'prunekit[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(str(run_file(run_dir, "tensorboard", "logger 'tensorboard'")))
        self.epochs = 0

    def log(self, record: dict[str, Any]) -> None:
        event = record.get("event")
        if event == "step":
            self._scalars("pruning", record, record["step"])
        elif event == "epoch":
            self.epochs += 1
            self._scalars(record["phase"], record, self.epochs)

    def _scalars(self, section: str, record: dict[str, Any], x: int) -> None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "epoch"):
                self.writer.add_scalar(f"{section}/{key}", value, x)

    def close(self) -> None:
        self.writer.close()


@hookimpl
def prunekit_loggers() -> list[Spec]:
    return [
        Spec("csv", Csv, "one event's records as CSV rows; args filename (steps.csv), event (step)", CsvArgs),
        Spec("tensorboard", TensorBoard, "TensorBoard scalars (optional extra)", NoArgs),
    ]
