"""What was being done when a user's data or model failed: an error raised inside their iterable
or their forward is re-raised as a prunekit error naming the phase, epoch and batch, its cause
kept (``--verbose`` shows the original traceback)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TypeVar

from .errors import DataError, PrunekitError, TrainingError, one_line

T = TypeVar("T")


def numbered(batches: Iterable[T], what: str) -> Iterator[tuple[int, T]]:
    """``batches`` numbered from 1; an error the data raises says which batch ``what`` was reading."""
    it, index = iter(batches), 0
    while True:
        index += 1
        try:
            batch = next(it)
        except StopIteration:
            return
        except PrunekitError:
            raise
        except Exception as exc:
            raise DataError(f"{what}, batch {index}: the data raised {one_line(exc)}") from exc
        yield index, batch


@contextlib.contextmanager
def failing_as(what: str) -> Iterator[None]:
    """An error of the model or loss inside the block, said as ``what`` failing."""
    try:
        yield
    except PrunekitError:
        raise
    except Exception as exc:
        raise TrainingError(f"{what}: {one_line(exc)}") from exc
