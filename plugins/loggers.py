"""Built-in loggers besides the run's own console lines and ``log.jsonl``: TensorBoard scalars
(an optional extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunekit import ConfigError, Spec, hookimpl


class TensorBoard:
    """Scalars per step and per epoch in ``run_dir/tensorboard`` (``pip install prunekit[tensorboard]``)."""

    def __init__(self, run_dir: Path | str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "logger 'tensorboard' needs the tensorboard package: pip install 'prunekit[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
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
        Spec("tensorboard", TensorBoard, "TensorBoard scalars (optional extra)"),
    ]
