"""The plugin contract's lifecycle events: hooks a run calls on every plugin that implements them
(broadcast), marked like the registry hooks of :mod:`prunekit.plugin.hookspecs`. Each receives
frozen records (:mod:`prunekit.run_records`), never the run's inner state: ``run`` is a
:class:`~prunekit.plugin.RunInfo`. A hook that raises ends the run with a ``PluginError`` naming
the plugin; the last checkpoint stays.

The examples run as doctests in the test suite.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..run_records import EpochRecord, RunInfo, StepRecord
from .hookspecs import hookspec


@hookspec
def prunekit_run_started(run: RunInfo) -> None:
    """Called once when a pruning run starts, after the baseline is ready.

    >>> import prunekit as pk
    >>> from prunekit.plugin import RunInfo
    >>> class Hello:
    ...     @pk.hookimpl
    ...     def prunekit_run_started(self, run):
    ...         print("pruning for", run.task, "on", run.device)
    >>> info = RunInfo("runs/x", "segmentation", "cpu", {}, {"miou": 0.9}, 2.3e8, 1.1e6)
    >>> with pk.registered(Hello()):
    ...     pk.manager().notify("run_started", run=info)
    pruning for segmentation on cpu
    """


@hookspec
def prunekit_step_done(run: RunInfo, record: StepRecord) -> None:
    """Called after every pruning step that held, once its checkpoint is written.

    ``record`` holds ``step``, ``macs``, ``params``, ``macs_percent``, ``params_percent``,
    ``removed`` (channels this step), ``at_limit``, ``seconds`` and ``metrics`` (the task's, on the
    validation data), with the measured speed-up where the run measures one.

    >>> import prunekit as pk
    >>> from prunekit.plugin import RunInfo, StepRecord
    >>> class Watch:
    ...     @pk.hookimpl
    ...     def prunekit_step_done(self, run, record):
    ...         print(record.step, record.macs_percent, record.metrics["miou"])
    >>> info = RunInfo("runs/x", "segmentation", "cpu", {}, {"miou": 0.9}, 2.3e8, 1.1e6)
    >>> step = StepRecord(1, 1.8e8, 9e5, 80.0, 81.0, 24, 0, 3.2, {"miou": 0.88})
    >>> with pk.registered(Watch()):
    ...     pk.manager().notify("step_done", run=info, record=step)
    1 80.0 0.88
    """


@hookspec
def prunekit_epoch_done(run: RunInfo, record: EpochRecord) -> None:
    """Called after every training, retraining or fine-tuning epoch.

    >>> import prunekit as pk
    >>> from prunekit.plugin import EpochRecord, RunInfo
    >>> class Watch:
    ...     @pk.hookimpl
    ...     def prunekit_epoch_done(self, run, record):
    ...         print(record.phase, record.step, record.epoch, record.loss)
    >>> info = RunInfo("runs/x", "segmentation", "cpu", {}, {}, 2.3e8, 1.1e6)
    >>> with pk.registered(Watch()):
    ...     pk.manager().notify("epoch_done", run=info, record=EpochRecord("retrain", 1, 0.21, 1e-3, step=2))
    retrain 2 1 0.21
    """


@hookspec
def prunekit_run_finished(run: RunInfo, summary: Mapping[str, Any]) -> None:
    """Called once when a run has written its export and summary (``summary.json``, as data).

    >>> import prunekit as pk
    >>> from prunekit.plugin import RunInfo
    >>> class Done:
    ...     @pk.hookimpl
    ...     def prunekit_run_finished(self, run, summary):
    ...         print("done", summary["macs_percent"])
    >>> info = RunInfo("runs/x", "segmentation", "cpu", {}, {}, 2.3e8, 1.1e6)
    >>> with pk.registered(Done()):
    ...     pk.manager().notify("run_finished", run=info, summary={"macs_percent": 26.0})
    done 26.0
    """
