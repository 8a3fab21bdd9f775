"""A logger: every pruning step as a line of a Markdown table in the run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import prunekit as pk
from prunekit.schema import field


@dataclass
class MarkdownArgs:
    filename: str = field("steps.md", doc="file in the run directory")


class MarkdownSteps:
    """Receives every record (see ``prunekit.protocols.Logger``); writes the ``step`` ones."""

    def __init__(self, run_dir: Path | str, filename: str = "steps.md") -> None:
        self.path = Path(run_dir) / filename
        self.rows: list[str] = []

    def log(self, record: dict[str, Any]) -> None:
        if record.get("event") == "step":
            self.rows.append(f"| {record['step']} | {record['macs_percent']:.1f} | {record['removed']} |")
            self.path.write_text("| step | MACs % | removed |\n|---|---|---|\n" + "\n".join(self.rows) + "\n")

    def close(self) -> None:
        pass


@pk.hookimpl
def prunekit_loggers() -> list[pk.Spec]:
    return [pk.Spec("markdown_steps", MarkdownSteps, "pruning steps as a Markdown table", MarkdownArgs)]
