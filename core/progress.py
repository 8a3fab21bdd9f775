"""Progress bars: with a total and an ETA where the length is known, and none at all when the
output is not a terminal (a log file gets the run's lines, not bar frames)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def bar(items: Iterable[T], desc: str, shown: bool = True) -> Iterable[T]:
    """``items`` with a progress bar on stderr while ``shown`` and stderr is a terminal."""
    # disable=None is tqdm's "off where the stream is not a TTY"
    return tqdm(items, desc=desc, leave=False, disable=None if shown else True, dynamic_ncols=True)
