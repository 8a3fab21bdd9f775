"""Built-in loggers: the console (one line per step and epoch), a JSONL file of every record,
and TensorBoard scalars (optional extra)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from prunekit import ConfigError, Spec, hookimpl
from prunekit.text import human

STEP_COLUMNS = ("step", "MACs %", "params %", "removed", "at limit", "mIoU", "time")


class Console:
    """A row per pruning step, a line per epoch; written through tqdm so bars stay intact."""

    def __init__(self, run_dir: Path | str) -> None:
        self.header_done = False

    def log(self, record: dict[str, Any]) -> None:
        event = record.get("event")
        if event == "step":
            if not self.header_done:
                tqdm.write(" ".join(f"{c:>9}" for c in STEP_COLUMNS))
                self.header_done = True
            miou = f"{record['miou']:.4f}" if "miou" in record else "-"
            tqdm.write(f"{record['step']:>9} {record['macs_percent']:>9.2f} {record['params_percent']:>9.2f} "
                       f"{record['removed']:>9} {record['at_limit']:>9} {miou:>9} {record['seconds']:>8.1f}s")
        elif event == "epoch":
            extra = f"  val mIoU {record['miou']:.4f}" if "miou" in record else ""
            step = f" step {record['step']}" if record.get("step") else ""
            tqdm.write(f"{record['phase']}{step} epoch {record['epoch']}: loss {record['loss']:.4f}{extra}")
        elif event == "stop":
            tqdm.write(record["message"])
        elif event == "summary":
            tqdm.write(f"done: {human(record['macs'])} MACs ({record['macs_percent']:.1f} %), "
                       f"{human(record['params'])} params ({record['params_percent']:.1f} %)")

    def close(self) -> None:
        pass


class JsonLines:
    """Every record of the run, one JSON object per line, in ``run_dir/log.jsonl``."""

    def __init__(self, run_dir: Path | str, filename: str = "log.jsonl") -> None:
        path = Path(run_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = path.open("a")

    def log(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, default=float) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class TensorBoard:
    """Scalars per step and per epoch in ``run_dir/tensorboard`` (``pip install prunekit[tensorboard]``)."""

    def __init__(self, run_dir: Path | str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("logger 'tensorboard' needs the tensorboard package: pip install 'prunekit[tensorboard]'") from None
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        self.epochs = 0

    def log(self, record: dict[str, Any]) -> None:
        event = record.get("event")
        if event == "step":
            for key in ("macs_percent", "params_percent", "miou"):
                if key in record:
                    self.writer.add_scalar(f"pruning/{key}", record[key], record["step"])
        elif event == "epoch":
            self.epochs += 1
            for key in ("loss", "miou"):
                if key in record:
                    self.writer.add_scalar(f"{record['phase']}/{key}", record[key], self.epochs)

    def close(self) -> None:
        self.writer.close()


@hookimpl
def prunekit_loggers() -> list[Spec]:
    return [
        Spec("console", Console, "progress lines on the terminal"),
        Spec("jsonl", JsonLines, "every record in run_dir/log.jsonl"),
        Spec("tensorboard", TensorBoard, "TensorBoard scalars (optional extra)"),
    ]
