"""The examples in the hook reference documentation run."""
import doctest

import prunekit.hookspecs


def test_hookspec_examples_run():
    result = doctest.testmod(prunekit.hookspecs, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 20
    assert result.failed == 0


def test_every_hook_has_an_example():
    hooks = [getattr(prunekit.hookspecs, n) for n in dir(prunekit.hookspecs) if n.startswith("prunekit_")]
    assert len(hooks) == 12
    assert all(">>>" in h.__doc__ for h in hooks)
