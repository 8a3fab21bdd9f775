"""Removal granularity inside a group: grouped convolutions and GroupNorm.

A grouped convolution with G groups is G convolutions side by side, so it stays a valid grouped
convolution only if each of its groups loses as many input channels as the others, and as many
output channels (*balance*). GroupNorm normalises each block of C/G channels over itself, so
removing whole blocks leaves the other blocks' outputs unchanged and removing part of one does
not (*blocks*). Within a group, channels are therefore removed in *units*: whole blocks (single
channels where no GroupNorm applies), one from every *cell* at a time, where the cells are the
finest parts the balance constraints cut the group into.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .channel_graph import Group

Channels = tuple[int, ...]


@dataclass(frozen=True)
class GroupConstraint:
    """``kind`` ``balance`` or ``blocks`` imposed by ``layer`` on ``segments`` of group channels."""

    kind: str
    layer: str
    segments: tuple[Channels, ...]


def blocks_of(group: Group) -> list[Channels]:
    """The group's channels in blocks that go whole: joined by every ``blocks`` constraint."""
    owner = list(range(group.channels))

    def find(c: int) -> int:
        while owner[c] != c:
            owner[c] = owner[owner[c]]
            c = owner[c]
        return c

    for constraint in group.constraints:
        if constraint.kind == "blocks":
            for segment in constraint.segments:
                for c in segment[1:]:
                    a, b = find(segment[0]), find(c)
                    owner[max(a, b)] = min(a, b)
    found: dict[int, list[int]] = defaultdict(list)
    for c in range(group.channels):
        found[find(c)].append(c)
    return [tuple(block) for block in found.values()]


def settle(group: Group) -> str | None:
    """Split the group into cells of blocks (``group.cells``); or, when its constraints cannot be
    met together, the reason its channels stay."""
    blocks = blocks_of(group)
    balance = [c for c in group.constraints if c.kind == "balance"]
    if not balance:
        group.cells = (tuple(blocks),)
        return None
    where = [{c: i for i, segment in enumerate(k.segments) for c in segment} for k in balance]
    position = {c: tuple(w.get(c, -1) for w in where) for c in range(group.channels)}  # its segment in each
    cells: dict[tuple[int, ...], list[Channels]] = defaultdict(list)
    for block in blocks:
        if len({position[c] for c in block}) != 1:
            return _incompatible(group)
        cells[position[block[0]]].append(block)
    sizes = {len(block) for block in blocks}
    for i, constraint in enumerate(balance):
        per_segment = {sum(1 for key in cells if key[i] == s) for s in range(len(constraint.segments))}
        if len(per_segment) != 1 or len(sizes) != 1:
            return _incompatible(group)
    group.cells = tuple(tuple(cell) for _, cell in sorted(cells.items()))
    return None


def _incompatible(group: Group) -> str:
    layers = sorted({c.layer for c in group.constraints})
    return f"are cut into groups by {', '.join(layers)} in ways no removal satisfies together"


def kept_per_cell(group: Group) -> int:
    """Blocks every cell keeps: one; two under a grouped convolution, whose groups would otherwise
    keep one input channel each and turn it into a depthwise convolution (another kind of cut)."""
    return 2 if any(c.kind == "balance" for c in group.constraints) else 1


def removal_units(group: Group, key: Callable[[int], float]) -> list[Channels]:
    """The units the group's channels may go in, lowest ``key`` first: one block from every cell
    each, so any number of leading units is a valid removal that leaves every cell its blocks."""
    allowed, keep = set(group.prunable), kept_per_cell(group)
    ordered = []
    for cell in group.cells:
        usable = [b for b in cell if all(c in allowed and math.isfinite(key(c)) for c in b)]
        usable.sort(key=lambda b: (sum(key(c) for c in b) / len(b), b[0]))
        ordered.append(usable[: max(0, len(cell) - keep)])
    depth = min((len(cell) for cell in ordered), default=0)
    return [tuple(sorted(c for cell in ordered for c in cell[k])) for k in range(depth)]


def violation(group: Group, removed: Iterable[int]) -> str | None:
    """Why removing ``removed`` from the group breaks one of its constraints, or ``None``."""
    gone = set(removed)
    for constraint in group.constraints:
        lost = [sum(1 for c in segment if c in gone) for segment in constraint.segments]
        if constraint.kind == "blocks":
            split = [i for i, (n, s) in enumerate(zip(lost, constraint.segments)) if 0 < n < len(s)]
            if split:
                size = len(constraint.segments[split[0]])
                return (
                    f"layer {constraint.layer} normalises its channels in groups of {size}, which go whole or "
                    f"not at all; this removal takes part of group {split[0]}"
                )
        elif len(set(lost)) > 1:
            return (
                f"layer {constraint.layer} has {len(lost)} groups, and each must lose as many of these "
                f"channels as the others; this removal takes {lost}"
            )
        elif lost[0] and len(constraint.segments[0]) - lost[0] < 2:
            return (
                f"layer {constraint.layer} would keep {len(constraint.segments[0]) - lost[0]} of these channels "
                "per group; a grouped convolution keeps at least 2"
            )
    return None


def sample(group: Group, fraction: float, rng: random.Random) -> set[int]:
    """A random valid removal of about ``fraction`` of the group's channels (at least one unit)."""
    draws = {c: rng.random() for c in range(group.channels)}
    units = removal_units(group, draws.__getitem__)
    if not units:
        return set()
    count = max(1, min(len(units), int(fraction * group.channels / len(units[0]))))
    return {c for unit in units[:count] for c in unit}
