"""Channel atoms: one per channel of every producer, joined when channels must go together.

Every layer that creates channels (a convolution's output, the model input) gets a *space* of
fresh atoms. Tracing unions atoms that must be removed together (a residual add joins channel i
of both producers) and pins atoms that must stay (the model output, an op we cannot follow).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tag:
    """The channel identity of a tensor: which dim holds channels, and the atom of each."""

    dim: int
    atoms: tuple[int, ...]


@dataclass(frozen=True)
class Constraint:
    """How the channels of one layer may be removed, beyond "together": ``balance`` — the same
    number from every segment (a grouped convolution's groups); ``blocks`` — whole segments only
    (GroupNorm's groups). ``segments`` are atoms."""

    kind: str
    layer: str
    segments: tuple[tuple[int, ...], ...]


def segments(atoms: tuple[int, ...], count: int) -> tuple[tuple[int, ...], ...]:
    """``atoms`` cut into ``count`` equal consecutive segments."""
    size = len(atoms) // count
    return tuple(atoms[i * size : (i + 1) * size] for i in range(count))


@dataclass(frozen=True)
class Space:
    """The channels one producer creates: ``name`` is its layer (or ``<input>``)."""

    name: str
    first: int
    size: int


class Atoms:
    """Union-find over channel atoms, with pin reasons kept per class."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.space_of: list[int] = []
        self.spaces: list[Space] = []
        self.reasons: dict[int, set[str]] = {}

    def new_space(self, name: str, size: int, pinned: str | None = None) -> tuple[int, ...]:
        first = len(self.parent)
        self.spaces.append(Space(name, first, size))
        self.parent.extend(range(first, first + size))
        self.space_of.extend([len(self.spaces) - 1] * size)
        atoms = tuple(range(first, first + size))
        if pinned:
            self.pin(atoms, pinned)
        return atoms

    def find(self, atom: int) -> int:
        parent = self.parent
        root = atom
        while parent[root] != root:
            root = parent[root]
        while parent[atom] != root:  # path compression
            parent[atom], atom = root, parent[atom]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra  # the older atom stays the root, keeping channel order stable
        if rb in self.reasons:
            self.reasons.setdefault(ra, set()).update(self.reasons.pop(rb))

    def union_all(self, xs: tuple[int, ...], ys: tuple[int, ...]) -> None:
        for a, b in zip(xs, ys):
            self.union(a, b)

    def pin(self, atoms: tuple[int, ...], reason: str) -> None:
        for atom in atoms:
            self.reasons.setdefault(self.find(atom), set()).add(reason)

    def space(self, atom: int) -> Space:
        return self.spaces[self.space_of[atom]]
