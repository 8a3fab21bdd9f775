"""A logger: every pruning step as a line of a Markdown table in the run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunekit.plugin import Spec, field, hookimpl, run_file


@dataclass
class MarkdownArgs:
    filename: str = field("steps.md", doc="file in the run directory")


class MarkdownSteps:
    """Receives every record (see ``prunekit.plugin.protocols.Logger``); writes the ``step`` ones."""

    def __init__(self, run_dir: Path | str, filename: str = "steps.md") -> None:
        self.path = run_file(run_dir, filename, "logging.markdown_steps.filename")
        self.rows: list[str] = []

    def log(self, record: dict[str, Any]) -> None:
        if record.get("event") == "step":
            self.rows.append(f"| {record['step']} | {record['macs_percent']:.1f} | {record['removed']} |")
            self.path.write_text("| step | MACs % | removed |\n|---|---|---|\n" + "\n".join(self.rows) + "\n")

    def close(self) -> None:
        pass


@hookimpl
def prunekit_loggers() -> list[Spec]:
    return [Spec("markdown_steps", MarkdownSteps, "pruning steps as a Markdown table", MarkdownArgs)]
