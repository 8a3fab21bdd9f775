"""Careless or hostile objects, configs and cost functions: each ends in one line — a
PrunekitError from Python, exit 2 from the CLI — before the run directory is claimed."""

import functools

import pytest
import torch
import torch.nn.functional as F
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import prunekit as pk
from prunekit.cli import main

SIZE = (16, 24)


def unet(**args):
    torch.manual_seed(0)
    return pk.get("model", "unet", width=4, **args)


def eyes(n=8, channels=1, dtype=torch.float32, classes=4, target_dtype=torch.long, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, channels, *SIZE, generator=g)
    images = images.to(dtype) if dtype.is_floating_point else (images.abs() * 50).to(dtype)
    return TensorDataset(images, torch.randint(0, classes, (n, *SIZE), generator=g).to(target_dtype))


def loader(data=None, **kwargs):
    return DataLoader(data if data is not None else eyes(), batch_size=4, **kwargs)


class FailsMidway:
    """A loader whose second batch raises, as a network file system does."""

    def __init__(self):
        self.loader = loader()

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i == 1:
                raise OSError("stale file handle")
            yield batch

    def __len__(self):
        return len(self.loader)


class Returns(nn.Module):
    def __init__(self, wrap):
        super().__init__()
        self.net, self.wrap = unet(), wrap

    def forward(self, x):
        return self.wrap(self.net(x))


def config(run_dir, **extra):
    return {
        "run_dir": str(run_dir),
        "task": "segmentation",
        "train": {"epochs": 0},
        "retrain": "none",
        "finetune": {"epochs": 0},
        "pruning": {"prune_away_percent": 30, "step": {"percent": 30}, "max_steps": 1, "max_drop": None},
        **extra,
    }


EMPTY = TensorDataset(torch.zeros(0, 1, *SIZE), torch.zeros(0, *SIZE, dtype=torch.long))
# case -> (objects replacing a valid model/train/val, error class, message fragment)
API = {
    "loss returns a map": ({"loss": lambda o, t: F.cross_entropy(o, t, reduction="none")}, pk.ConfigError,
                           "returns a tensor of shape (4, 16, 24); it must return a scalar tensor"),
    "loss returns a float": ({"loss": lambda o, t: 1.0}, pk.ConfigError, "returns float; it must return a scalar"),
    "loss is NaN": ({"loss": lambda o, t: F.cross_entropy(o, t) * float("nan")}, pk.DataError, "is nan on the first"),
    "loss is a constant": ({"loss": lambda o, t: torch.tensor(1.0)}, pk.ConfigError, "does not depend on the model"),
    "loss is no function": ({"loss": 3}, pk.ConfigError, "loss=: a function loss(logits, target) is needed, not int"),
    "3-channel images": ({"train": loader(eyes(channels=3)), "val": loader(eyes(channels=3))}, pk.DataError,
                         "the model's first layer (inc.conv1) takes 1 channels; the data given (train=, val=) "
                         "yields 3"),
    "int64 images": ({"train": loader(eyes(dtype=torch.int64))}, pk.DataError,
                     "yields int64 images; the model's weights are float32"),
    "float64 images": ({"val": loader(eyes(dtype=torch.float64))}, pk.DataError, "yields float64 images"),
    "a one-shot generator": ({"train": (b for b in loader())}, pk.DataError, "train= is a one-shot iterator"),
    "labels out of range": ({"train": loader(eyes(classes=9))}, pk.DataError, "but the model outputs 4 classes"),
    "float labels": ({"val": loader(eyes(target_dtype=torch.float32))}, pk.DataError,
                     "yields float32 targets; class indices must be integers"),
    "forward returns a dict": ({"model": Returns(lambda y: {"out": y})}, pk.ConfigError,
                               "forward returns a dict with ['out'], not a tensor"),
    "forward returns a tuple": ({"model": Returns(lambda y: (y, y))}, pk.ConfigError, "returns a tuple, not a tensor"),
    "output smaller than the targets": ({"model": Returns(lambda y: y[..., ::2, ::2])}, pk.DataError,
                                        "the model's output is (4, 4, 8, 12) but the targets"),
    "a model on the meta device": ({"model": unet().to("meta")}, pk.ConfigError, "is on the meta device"),
    "a lambda as the model": ({"model": lambda x: x}, pk.ConfigError, "a torch.nn.Module is needed, not function"),
    "an empty validation loader": ({"val": loader(EMPTY)}, pk.DataError, "(validation) yields no batch"),
    "an empty training loader": ({"train": loader(EMPTY)}, pk.DataError, "yields no batch"),
}  # fmt: skip


@pytest.mark.parametrize("case", API)
def test_a_wrong_object_is_one_line_before_the_run_dir_is_claimed(tmp_path, case):
    objects, error, message = API[case]
    given = {"model": unet(), "train": loader(), "val": loader(), **objects}
    with pytest.raises(error) as caught:
        pk.Pruner(config(tmp_path / "run"), progress=False, **given).run()
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_data_failing_midway_names_the_phase_and_batch_and_keeps_its_cause(tmp_path):
    with pytest.raises(pk.DataError, match=r"calibrate, batch 2: the data raised OSError: stale file handle") as caught:
        pk.Pruner(config(tmp_path / "run"), progress=False, model=unet(), train=FailsMidway(), val=loader()).run()
    assert isinstance(caught.value.__cause__, OSError)


def test_a_forward_failing_midway_names_the_batch(tmp_path):
    class Breaks(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.calls = unet(), 0

        def forward(self, x):
            self.calls += 1
            if x.shape[0] == 4 and self.calls > 6:
                raise RuntimeError("CUDA error: an illegal memory access")
            return self.net(x)

    cfg = config(tmp_path / "run", retrain={"epochs_per_step": 1})
    failed = r"^(calibrate|retrain)[^:]*, batch \d+: RuntimeError: CUDA error"
    with pytest.raises(pk.TrainingError, match=failed) as caught:
        pk.Pruner(cfg, progress=False, model=Breaks(), train=loader(), val=loader()).run()
    assert isinstance(caught.value.__cause__, RuntimeError)


def fingerprinted(tmp_path, **objects):
    given = {"model": unet(), "train": loader(shuffle=True), "val": loader(), "loss": nn.CrossEntropyLoss()}
    return pk.Pruner(config(tmp_path / "run"), progress=False, **{**given, **objects})


@pytest.mark.parametrize(
    "other, differs",
    [
        ({"model": pk.get("model", "unet", width=4)}, "model_weights"),  # unseeded: other initial weights
        ({"train": loader(eyes(seed=1), shuffle=True)}, "train"),  # other data of the same size
        ({"loss": nn.CrossEntropyLoss(label_smoothing=0.1)}, "loss"),
        ({"loss": functools.partial(F.cross_entropy, label_smoothing=0.1)}, "loss"),
    ],
)
def test_resume_compares_weights_data_and_loss_settings_not_only_names(tmp_path, other, differs):
    fingerprinted(tmp_path).prune()
    with pytest.raises(pk.ConfigError, match=rf"started with other objects \(they differ in: {differs}\)"):
        fingerprinted(tmp_path, **other).prune(resume=True)
    fingerprinted(tmp_path).prune(resume=True)  # the same objects, rebuilt and reshuffled: accepted


def test_a_cost_function_of_zero_is_a_valid_price_through_a_whole_run(tmp_path):
    free = {"down1.*": lambda module, shape: 0}
    result = pk.Pruner(
        config(tmp_path / "run"), progress=False, model=unet(), train=loader(), val=loader(), overrides=free
    ).run()
    assert result.summary["macs_percent"] < 100


WRONG = st.one_of(
    st.none(), st.integers(), st.floats(), st.text(max_size=8), st.binary(max_size=8),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(nn.ReLU), st.just(lambda *a: a), st.just(torch.zeros(2)),
)  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=WRONG, example=WRONG, percent=WRONG)
def test_the_python_api_meets_wrong_objects_with_prunekit_errors(model, example, percent):
    x = torch.zeros(1, 1, *SIZE)
    for call in (
        lambda: pk.count(model, x),
        lambda: pk.count(unet(), example),
        lambda: pk.trace(model, x),
        lambda: pk.prune_to(unet(), x, percent=percent),
        lambda: pk.Pruner({"run_dir": "unused", "task": "segmentation"}, model=model),
        lambda: pk.Pruner({"run_dir": "unused", "task": "segmentation"}, model=unet(), train=example, val=example),
    ):
        try:
            call()
        except pk.PrunekitError as exc:
            assert "\n" not in str(exc)


# -- the same from YAML and the command line -----------------------------------------------------------------------
def yaml_run(tmp_path, **patch):
    cfg = {
        "run_dir": str(tmp_path / "run"),
        "model": {"name": "unet", "args": {"width": 4}},
        "data": {"name": "synthetic_eyes", "args": {"size": list(SIZE), "n_train": 8, "n_val": 4}},
        "train": {"epochs": 0},
        "retrain": "none",
        "finetune": {"epochs": 0},
        "pruning": {"max_steps": 1, "max_drop": None, "class_floor": None},
        **patch,
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "cfg.yaml"


BROKEN = "raise RuntimeError('half-written module')\n"
COSTS = "def raises(module, shape):\n    raise ValueError('no price list')\n"
YAML = {
    "model takes 3 channels, data has 1": ({"model": {"name": "unet", "args": {"width": 4, "in_channels": 3}}},
        "the model's first layer (inc.conv1) takes 3 channels; data 'synthetic_eyes' yields 1 — "
        "set model.args.in_channels: 1"),
    "2 classes against 4": ({"model": {"name": "unet", "args": {"width": 4, "n_classes": 2}}},
        "the model outputs 2 classes; data 'synthetic_eyes' has 4 — set model.args.n_classes: 4"),
    "1 channel against shapes of 3": ({"data": {"name": "synthetic_shapes", "args": {"channels": 3}},
                                       "model": {"name": "unet", "args": {"width": 4, "n_classes": 3}}},
        "takes 1 channels; data 'synthetic_shapes' yields 3 — set data.args.channels: 1 or set model.args.in_channels"),
    "a factory module that raises on import": ({"model": {"factory": "half_written:build"}},
        "model.factory: importing 'half_written' failed (RuntimeError: half-written module)"),
    "a cost function that raises": ({"cost": {"overrides": {"Conv2d": "raising_costs:raises"}}},
        "cost.overrides['Conv2d'] on layer 'inc.conv1' raised ValueError: no price list"),
    "a cost module that raises on import": ({"cost": {"overrides": {"Conv2d": "half_written:cost"}}},
        "cost.overrides['Conv2d']: importing 'half_written' failed"),
    "a logger over the run's own log": ({"logging": [{"csv": {"filename": "log.jsonl"}}]},
        "'log.jsonl' is the run's own file"),
}  # fmt: skip


@pytest.mark.parametrize("case", YAML)
def test_a_config_at_odds_with_itself_is_exit_2_and_claims_nothing(tmp_path, capsys, case):
    patch, message = YAML[case]
    (tmp_path / "half_written.py").write_text(BROKEN)
    (tmp_path / "raising_costs.py").write_text(COSTS)
    path = yaml_run(tmp_path, **patch)
    for command in (["run", path], ["cost", "--config", path]):
        code = main([str(a) for a in command])
        err = capsys.readouterr().err.strip().splitlines()
        if command[0] == "cost" and "cost" not in case:
            continue  # counting needs no data
        assert code == 2 and len(err) == 1 and message in err[0], (command, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml", "half_written.py", "raising_costs.py"]


def test_a_cost_function_that_raises_is_a_config_error_from_count_too():
    def no_price(module, shape):
        raise KeyError("no price list")

    with pytest.raises(pk.ConfigError, match=r"cost\.overrides\['Conv2d'\] on layer 'inc\.conv1' raised KeyError"):
        pk.count(unet(), torch.zeros(1, 1, *SIZE), overrides={"Conv2d": no_price})
