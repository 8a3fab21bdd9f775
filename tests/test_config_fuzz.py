"""A property: whatever one changes in a valid config, loading and checking it either succeeds or
ends in a one-line prunekit error — never a traceback."""

import copy
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prunekit as pk
from prunekit.distributed import resolve_device
from prunekit.run.components import checked_trainer

VALID = {
    "run_dir": "runs/fuzz",
    "model": {"name": "unet", "args": {"width": 4, "n_classes": 4}},
    "data": {"name": "synthetic_eyes", "args": {"size": [32, 48], "n_train": 8, "n_val": 4}, "batch_size": 4},
    "loss": {"cross_entropy": 1.0},
    "distillation": {"hinton": {"weight": 1.0, "args": {"T": 2.0}}},
}
RESOLVED = pk.load_config(VALID).to_dict()

VALUES = [
    None,
    True,
    False,
    0,
    1,
    -1,
    3,
    2**40,
    0.5,
    -0.5,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "x",
    "unet",
    "none",
    [],
    [1],
    [1, 2, 3],
    {},
    {"a": 1},
    {"weight": math.nan},
    "cuda:7",
    "../escape",
]


def paths(tree, prefix=()):
    """Every key path of a nested mapping, parents before children."""
    for key, value in tree.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from paths(value, (*prefix, key))


PATHS = list(paths(RESOLVED))
#: where plugins take their arguments: mutated more often, since only the plugin can check them
ARG_PATHS = [p for p in PATHS if "args" in p[:-1] or p[0] in ("loss", "distillation")]


@st.composite
def mutation(draw):
    cfg = copy.deepcopy(RESOLVED)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.one_of(st.sampled_from(ARG_PATHS), st.sampled_from(PATHS)))
        parent = cfg
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            parent.pop(path[-1], None)
        elif action == "add":
            parent[draw(st.sampled_from(["extra", "Weights", "args", "T", "p"]))] = draw(st.sampled_from(VALUES))
        else:
            parent[path[-1]] = draw(st.sampled_from(VALUES))
    return cfg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation())
def test_every_mutated_config_loads_or_fails_in_one_line(cfg):
    try:
        config = pk.load_config(cfg)
        resolve_device(config.device)
        checked_trainer(config, pk.manager())
    except pk.PrunekitError as exc:
        assert "\n" not in str(exc), str(exc)
    else:  # accepted: then no number in it is NaN or infinite (a NaN passes every range check)
        assert all(math.isfinite(v) for v in numbers(config.to_dict())), config


def numbers(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from numbers(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from numbers(value)
    elif isinstance(tree, float):
        yield tree


@pytest.mark.parametrize("device", ["cuda:7", "tpu", ""])
def test_devices_that_cannot_be_had_are_config_errors(device):
    if torch.cuda.is_available() and device == "cuda:7":
        pytest.skip("a machine with a GPU")
    with pytest.raises(pk.ConfigError, match="device"):
        resolve_device(device)
