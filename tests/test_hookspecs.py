"""The examples in the hook reference documentation run."""

import doctest

import pytest

import prunekit.plugin.events
import prunekit.plugin.hookspecs
from prunekit.plugin.manager import EVENTS, KINDS

MODULES = (prunekit.plugin.hookspecs, prunekit.plugin.events)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_hookspec_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4
    assert result.failed == 0


def test_every_hook_has_an_example():
    hooks = {n: getattr(m, n) for m in MODULES for n in dir(m) if n.startswith("prunekit_")}
    # every hook is a registry the manager builds, a lifecycle event, or the traversal
    assert set(hooks) == {*KINDS.values(), *(f"prunekit_{e}" for e in EVENTS), "prunekit_traversal",
                          "prunekit_unavailable"}  # fmt: skip
    assert {n for n in dir(prunekit.plugin.events) if n.startswith("prunekit_")} == {f"prunekit_{e}" for e in EVENTS}
    assert all(">>>" in hook.__doc__ for hook in hooks.values())


def test_event_hooks_receive_frozen_public_records_only():
    import dataclasses
    import typing
    from collections.abc import Mapping

    from prunekit.plugin import EpochRecord, RunInfo, StepRecord

    public = {RunInfo, StepRecord, EpochRecord, Mapping[str, typing.Any]}
    for event in EVENTS:
        hints = typing.get_type_hints(getattr(prunekit.plugin.events, f"prunekit_{event}"))
        assert set(hints.values()) <= public | {type(None)}, (event, hints)
    for record in (RunInfo, StepRecord, EpochRecord):
        assert dataclasses.is_dataclass(record) and record.__dataclass_params__.frozen
