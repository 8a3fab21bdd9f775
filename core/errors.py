"""The typed errors prunekit raises for bad input, and the "did you mean" helper."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PrunekitError(Exception):
    """Base of every error caused by bad input; the CLI prints its message on one line."""


class ConfigError(PrunekitError, ValueError):
    """A configuration key, type or value is invalid."""


class PluginError(PrunekitError, LookupError):
    """A plugin is unknown, broken, or registers a name twice. ``details`` holds the plugin's own
    traceback when it failed to load (the CLI prints it under ``--verbose``)."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class DataError(PrunekitError, ValueError):
    """A dataset file or folder is missing, unreadable or inconsistent."""


class CheckpointError(PrunekitError, ValueError):
    """A checkpoint or export is missing, corrupt, or does not match the model."""


class PruneError(PrunekitError, ValueError):
    """A pruning request cannot be carried out; the model is left untouched."""


class TrainingError(PrunekitError):
    """Training cannot go on: the loss kept being NaN or infinite, or the weights became so."""


class StorageError(PrunekitError, OSError):
    """The operating system refused a read or write in a run directory (a file in the way, no
    permission, a full disk); what was written completely before stays intact."""


def one_line(exc: BaseException) -> str:
    """An exception as ``Type: first line of its message``."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def suggest(name: str, choices: Iterable[str], limit: int = 12) -> str:
    """``did you mean 'x'?`` (when one is close) and the valid choices — the closest few when
    there are more than ``limit``."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    if len(choices) > limit:
        nearest = difflib.get_close_matches(str(name), choices, n=5, cutoff=0)
        return f"{hint}closest of {len(choices)}: {', '.join(nearest)}"
    return f"{hint}valid: {', '.join(choices) if choices else '(none)'}"
