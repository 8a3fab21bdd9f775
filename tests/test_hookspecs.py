"""The examples in the hook reference documentation run."""

import doctest

import prunekit.plugin.hookspecs
from prunekit.plugin.manager import EVENTS, KINDS


def test_hookspec_examples_run():
    result = doctest.testmod(prunekit.plugin.hookspecs, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 20
    assert result.failed == 0


def test_every_hook_has_an_example():
    names = {n for n in dir(prunekit.plugin.hookspecs) if n.startswith("prunekit_")}
    # every hook is a registry the manager builds, a lifecycle event, or the traversal
    assert names == {*KINDS.values(), *(f"prunekit_{e}" for e in EVENTS), "prunekit_traversal", "prunekit_unavailable"}
    assert all(">>>" in getattr(prunekit.plugin.hookspecs, n).__doc__ for n in names)
