"""The plugin system: discovery through real installed distributions, errors, lookups."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from torch import nn

import prunekit as pk
from prunekit.plugin import StepRecord
from prunekit.plugin.manager import Manager


def install_plugin(tmp_path, name, body, entry="plugin"):
    """Build and install a one-module distribution with a `prunekit` entry point into its own folder."""
    project = tmp_path / f"src-{name}"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "1.2.3"
        [project.entry-points.prunekit]
        {entry} = "{name.replace("-", "_")}"
        [tool.setuptools]
        py-modules = ["{name.replace("-", "_")}"]
    """)
    )
    (project / f"{name.replace('-', '_')}.py").write_text(textwrap.dedent(body))
    target = tmp_path / f"site-{name}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(project),
        ],
        check=True,
        capture_output=True,
    )
    return target


def run_prunekit(args, site, **env):
    environ = {**os.environ, "PYTHONPATH": str(site), "PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD": "", **env}
    return subprocess.run([sys.executable, "-m", "prunekit", *args], capture_output=True, text=True, env=environ)


TINY = """
    import prunekit as pk
    from torch import nn

    @pk.hookimpl
    def prunekit_models():
        return [pk.Spec("tiny", lambda width=3: nn.Conv2d(1, width, 1), "a tiny model")]
"""


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plugins")
    return {
        "good": install_plugin(tmp, "pk-tiny", TINY, entry="tiny"),
        "broken": install_plugin(
            tmp, "pk-broken", "raise ImportError('missing dependency frobnicate')", entry="broken"
        ),
        "duplicate": install_plugin(tmp, "pk-dup", TINY.replace('"tiny"', '"unet"'), entry="dup"),
    }


@pytest.mark.slow
def test_installed_distribution_is_discovered_and_listed(sites):
    result = run_prunekit(["plugins", "--json"], sites["good"])
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    rows = {row["name"]: row for row in listing["plugins"]}
    assert rows["tiny"]["distribution"] == "pk-tiny" and rows["tiny"]["version"] == "1.2.3"
    assert rows["tiny"]["registers"] == {"model": ["tiny"]}
    assert rows["tiny"]["descriptions"] == {"model": {"tiny": "a tiny model"}}
    unet = rows["prunekit.unet"]
    assert unet["distribution"] == "prunekit" and unet["registers"] == {"model": ["unet"]}
    assert "conv2d" in rows["prunekit.layers"]["registers"]["layer_type"] and listing["clashes"] == []
    text = run_prunekit(["plugins"], sites["good"]).stdout
    assert "tiny  (pk-tiny 1.2.3)" in text and "model tiny: a tiny model" in text
    cost = run_prunekit(["cost", "--model", "tiny", "--input", "1,1,4,4", "--json"], sites["good"])
    assert json.loads(cost.stdout)["macs"] == 3 * 16


@pytest.mark.slow
def test_broken_plugin_warns_with_its_name_and_strict_mode_fails(sites):
    result = run_prunekit(["cost", "--model", "densenet", "--input", "1,1,32,32", "--json"], sites["broken"])
    assert result.returncode == 0
    assert "plugin 'broken' failed to load" in result.stderr and "frobnicate" in result.stderr
    strict = run_prunekit(["plugins"], sites["broken"], PRUNEKIT_STRICT_PLUGINS="1")
    assert strict.returncode == 2
    assert strict.stderr.strip().splitlines() == [
        "prunekit: error: plugin 'broken' failed to load (ImportError: missing dependency frobnicate)"
    ]


@pytest.mark.slow
def test_a_clash_fails_only_what_uses_the_name_and_plugins_lists_it(sites):
    result = run_prunekit(["cost", "--model", "unet"], sites["duplicate"])
    assert result.returncode == 2
    assert "model 'unet' is registered by both 'prunekit.unet' and 'dup'" in result.stderr
    other = run_prunekit(["cost", "--model", "densenet", "--input", "1,1,32,32", "--json"], sites["duplicate"])
    assert other.returncode == 0, other.stderr  # the clash stops only what asks for 'unet'
    listing = run_prunekit(["plugins"], sites["duplicate"])
    assert (
        listing.returncode == 0 and "clash: model 'unet' is registered by 'prunekit.unet' and 'dup'" in listing.stdout
    )


class Models:
    def __init__(self, *names):
        self.names = names

    @pk.hookimpl
    def prunekit_models(self):
        return [pk.Spec(n, nn.Identity, "") for n in self.names]


#: the zoos' models, where they import, are not what these tests are about
NO_ZOO = ("prunekit.zoo_models",)


def test_registered_plugin_object_and_duplicate_in_process():
    manager = Manager(disable=NO_ZOO)
    manager.register(Models("alpha"), "first")
    assert manager.names("model") == ["alpha", "densenet", "regnet", "resnet", "unet"]
    manager.register(Models("alpha"), "second")
    with pytest.raises(pk.PluginError, match="'alpha' is registered by both 'first' and 'second'"):
        manager.get("model", "alpha")
    assert manager.get("model", "unet")  # everything else still works
    assert manager.clashes() == [
        "model 'alpha' is registered by 'first' and 'second'; disable all but one with plugins.disable"
    ]


def test_hook_that_raises_is_skipped_with_a_warning(monkeypatch):
    class Raises:
        @pk.hookimpl
        def prunekit_models(self):
            raise RuntimeError("boom")

    manager = Manager()
    manager.register(Raises(), "raises")
    with pytest.warns(RuntimeWarning, match="plugin 'raises' raised in prunekit_models"):
        assert "unet" in manager.names("model")
    monkeypatch.setenv("PRUNEKIT_STRICT_PLUGINS", "1")
    strict = Manager()
    strict.register(Raises(), "raises")
    with pytest.raises(pk.PluginError, match="boom"):
        strict.registry("model")


def test_unknown_name_suggests_and_lists():
    with pytest.raises(pk.PluginError) as info:
        Manager(disable=NO_ZOO).get("model", "unett")
    assert str(info.value) == "unknown model 'unett'; did you mean 'unet'? valid: densenet, regnet, resnet, unet"
    with pytest.raises(pk.PluginError, match="did you mean 'model'"):
        pk.get("modle", "unet")


def test_get_builds_with_params_and_rejects_bad_ones():
    assert pk.get("model", "unet", width=4).inc.conv1.out_channels == 4
    with pytest.raises(pk.ConfigError, match=r"unknown key 'unet\.widht'; did you mean 'width'\?"):
        pk.get("model", "unet", widht=4)
    with pytest.raises(pk.ConfigError, match=r"unet\.width: 0 is out of range; it must be >= 1"):
        pk.get("model", "unet", width=0)
    conv = pk.get("layer_type", "conv2d")
    assert conv.module is nn.Conv2d


def test_load_by_dotted_module_and_disable(tmp_path, monkeypatch):
    (tmp_path / "extra_models.py").write_text(textwrap.dedent(TINY.replace('"tiny"', '"extra"')))
    monkeypatch.syspath_prepend(str(tmp_path))
    manager = Manager(load=("extra_models",), disable=("prunekit.densenet", *NO_ZOO))
    assert manager.names("model") == ["extra", "regnet", "resnet", "unet"]
    assert manager.info["extra_models"].source == "module"
    with pytest.raises(pk.PluginError, match="no installed plugin or importable module"):
        Manager(load=("no_such_plugin_module",))
    assert "unet" in Manager(load=("prunekit.plugins.models.unet",)).names("model")  # a built-in, by module path


def test_lifecycle_events_are_broadcast():
    seen = []

    class Listener:
        @pk.hookimpl
        def prunekit_step_done(self, run, record):
            seen.append(record.step)

    record = StepRecord(3, 10.0, 2.0, 50.0, 50.0, 4, 0, 0.1)
    with pk.registered(Listener()), pk.registered(type("Second", (Listener,), {})()):
        pk.manager().notify("step_done", run=None, record=record)
    assert seen == [3, 3]
    with pytest.raises(pk.PluginError, match="did you mean 'step_done'"):
        pk.manager().notify("step_dne")
