"""What a run did, as tables: channels kept per layer and block, baseline against pruned."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from .cost import CostReport, block_of
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
    blocks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        blocks[r.block][0] += r.original
        blocks[r.block][1] += r.kept
    body = [[b, str(o), str(k), f"{100.0 * k / o:.0f}%"] for b, (o, k) in blocks.items()]
    return text + "\n\n" + render_table(["block", "channels", "kept", "kept %"], body, right=(1, 2, 3))


def comparison_table(original: CostReport, pruned: CostReport) -> str:
    body = [["MACs", human(original.macs), human(pruned.macs), f"{100.0 * pruned.macs / original.macs:.1f}%"],
            ["params", human(original.params), human(pruned.params), f"{100.0 * pruned.params / original.params:.1f}%"]]
    return render_table(["", "baseline", "pruned", "ratio"], body, right=(1, 2, 3))
