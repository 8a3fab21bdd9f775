"""The plugin contract's lifecycle events: hooks a run calls on every plugin that implements them
(broadcast), marked like the registry hooks of :mod:`prunekit.plugin.hookspecs`.

The examples run as doctests in the test suite.
"""

from __future__ import annotations

from typing import Any

from .hookspecs import hookspec


@hookspec
def prunekit_run_started(run: Any) -> None:
    """Called once when a pruning run starts, after the baseline is ready (broadcast).

    ``run`` is the run's state (``run.config``, ``run.run_dir``, ``run.device``); ``run.model``
    is the student, ``run.teacher`` the frozen baseline.

    >>> import prunekit as pk
    >>> class Hello:
    ...     @pk.hookimpl
    ...     def prunekit_run_started(self, run):
    ...         print("pruning", type(run).__name__)
    >>> with pk.registered(Hello()):
    ...     pk.manager().notify("run_started", run=object())
    pruning object
    """


@hookspec
def prunekit_step_done(run: Any, record: dict) -> None:
    """Called after every pruning step, once its checkpoint is written (broadcast).

    ``record`` holds ``step``, ``macs``, ``params``, ``macs_percent``, ``params_percent``,
    ``removed`` (channels this step) and the validation metrics when there are any.

    >>> import prunekit as pk
    >>> class Watch:
    ...     @pk.hookimpl
    ...     def prunekit_step_done(self, run, record):
    ...         print(record["step"], record["macs_percent"])
    >>> with pk.registered(Watch()):
    ...     pk.manager().notify("step_done", run=None, record={"step": 1, "macs_percent": 80.0})
    1 80.0
    """


@hookspec
def prunekit_epoch_done(run: Any, record: dict) -> None:
    """Called after every training, retraining or fine-tuning epoch (broadcast).

    ``run`` is the trainer (``run.device``, ``run.task``); ``record`` holds ``phase`` (``train``,
    ``retrain``, ``finetune``), ``epoch``, ``loss`` and the validation metrics.

    >>> import prunekit as pk
    >>> class Watch:
    ...     @pk.hookimpl
    ...     def prunekit_epoch_done(self, run, record):
    ...         print(record["phase"], record["epoch"])
    >>> with pk.registered(Watch()):
    ...     pk.manager().notify("epoch_done", run=None, record={"phase": "retrain", "epoch": 2})
    retrain 2
    """


@hookspec
def prunekit_run_finished(run: Any, summary: dict) -> None:
    """Called once when a run has written its export and summary (broadcast).

    >>> import prunekit as pk
    >>> class Done:
    ...     @pk.hookimpl
    ...     def prunekit_run_finished(self, run, summary):
    ...         print("done", summary["macs_percent"])
    >>> with pk.registered(Done()):
    ...     pk.manager().notify("run_finished", run=None, summary={"macs_percent": 26.0})
    done 26.0
    """
