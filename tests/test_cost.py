"""Cost accounting: exact counts against hand-computed formulas and against PyTorch's counter."""

import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import prunekit as pk


def only_layer(module, x, **kw):
    report = pk.count(module, x, **kw)
    assert len(report.layers) == 1
    return report.layers[0]


@pytest.mark.parametrize(
    "module, size, macs, params",
    [
        # MACs = output elements × input channels per group × kernel
        (nn.Conv2d(3, 8, 3, stride=2, padding=1), (2, 3, 17, 19), 2 * 8 * 9 * 10 * 3 * 9, 8 * 3 * 9 + 8),
        (nn.Conv1d(4, 6, 5, bias=False), (1, 4, 20), 6 * 16 * 4 * 5, 6 * 4 * 5),
        (nn.Conv3d(2, 4, 3), (1, 2, 5, 6, 7), 4 * 3 * 4 * 5 * 2 * 27, 4 * 2 * 27 + 4),
        (nn.Conv2d(8, 12, 3, groups=4, padding=1), (1, 8, 6, 6), 12 * 36 * 2 * 9, 12 * 2 * 9 + 12),
        (nn.Conv2d(6, 12, 3, groups=6, padding=1), (1, 6, 5, 5), 12 * 25 * 1 * 9, 12 * 9 + 12),
        # transposed: MACs = input elements × output channels per group × kernel
        (nn.ConvTranspose2d(8, 6, 3, stride=2, groups=2), (1, 8, 5, 7), 8 * 35 * 3 * 9, 8 * 3 * 9 + 6),
        (nn.ConvTranspose1d(4, 2, 4, stride=2), (2, 4, 10), 2 * 4 * 10 * 2 * 4, 4 * 2 * 4 + 2),
        (nn.ConvTranspose3d(2, 3, 2, stride=2, bias=False), (1, 2, 2, 3, 4), 2 * 24 * 3 * 8, 2 * 3 * 8),
        (nn.Linear(10, 5), (3, 7, 10), 3 * 7 * 10 * 5, 55),
    ],
)
def test_weighted_layers(module, size, macs, params):
    row = only_layer(module, torch.zeros(size))
    assert (row.macs, row.params) == (macs, params)
    assert row.output_shape == tuple(module(torch.zeros(size)).shape)


@pytest.mark.parametrize(
    "module, size, kind, macs, params",
    [
        (nn.BatchNorm2d(8), (2, 8, 4, 4), "norm", 2 * 8 * 16, 16),
        (nn.BatchNorm1d(5), (4, 5), "norm", 20, 10),
        (nn.BatchNorm3d(3, affine=False), (1, 3, 2, 2, 2), "norm", 24, 0),
        (nn.ReLU(), (1, 8, 4, 4), "activation", 128, 0),
        (nn.MaxPool2d(2), (1, 8, 4, 4), "pooling", 8 * 4 * 4, 0),
        (nn.AvgPool2d(3, stride=1, padding=1), (1, 2, 4, 4), "pooling", 2 * 16 * 9, 0),
        (nn.AdaptiveAvgPool2d(1), (1, 8, 4, 4), "pooling", 128, 0),
        (nn.Upsample(scale_factor=2, mode="bilinear"), (1, 2, 3, 3), "upsample", 2 * 36 * 4, 0),
        (nn.Upsample(scale_factor=2, mode="nearest"), (1, 2, 3, 3), "upsample", 0, 0),
    ],
)
def test_optional_kinds_count_only_when_included(module, size, kind, macs, params):
    row = only_layer(module, torch.zeros(size), include=[kind])
    assert (row.kind, row.macs, row.params) == (kind, macs, params)
    default = pk.count(module, torch.zeros(size))
    assert default.macs == 0
    assert pk.count(module, torch.zeros(size), include="all").macs == macs
    assert pk.count(module, torch.zeros(size), include=["all"]).macs == macs  # as YAML and the CLI give it


def test_conv_subclass_is_counted_through_the_mro():
    class MyConv(nn.Conv2d):
        pass

    row = only_layer(MyConv(2, 4, 3), torch.zeros(1, 2, 5, 5))
    assert (row.type, row.macs) == ("MyConv", 4 * 9 * 2 * 9)


def test_shared_module_macs_per_call_params_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)
            self.other = nn.Conv2d(4, 4, 1)
            self.other.weight = self.conv.weight  # tied

        def forward(self, x):
            return self.other(self.conv(self.conv(x)))

    model = Twice()
    report = pk.count(model, torch.zeros(1, 4, 3, 3))
    assert report.layer("conv").calls == 2
    assert report.layer("conv").macs == 2 * 4 * 9 * 4
    assert report.macs == 3 * 4 * 9 * 4
    assert report.params == 16 + 4 + 4  # the tied weight once, two biases
    model.conv.bias.requires_grad_(False)
    assert pk.count(model, torch.zeros(1, 4, 3, 3)).trainable_params == 16 + 4


@pytest.mark.parametrize("name, expected", [("unet", 155_926_528_000), ("densenet", 16_420_864_000)])
def test_conv_macs_equal_pytorch_flop_counter(name, expected):
    model = pk.get("model", name).eval()
    report = pk.count(model, torch.zeros(1, 1, 640, 400))  # the seed's size, from shapes alone
    assert report.macs == expected and report.flops == 2 * expected and report.fallback is None
    x = torch.zeros(1, 1, 128, 96)  # a real forward, small enough to be quick
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert pk.count(model, x).macs == counter.get_total_flops() // 2


class Custom(nn.Module):
    """A layer prunekit does not know: its own weight, used through F.conv2d."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(4, 2, 3, 3))

    def forward(self, x):
        return F.conv2d(x, self.weight, padding=1)


def test_layer_without_rule_is_reported_uncounted_not_zero():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), Custom())
    report = pk.count(model, torch.zeros(1, 1, 5, 5))
    assert report.uncounted == ["1"]
    assert report.params == 2 + 2 + 72
    assert "uncounted" in report.table()


def test_python_override_counts_an_unknown_layer():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), Custom())
    report = pk.count(
        model,
        torch.zeros(1, 1, 5, 5),
        overrides={Custom: lambda module, shape: pk.numel(shape.output) * module.weight[0].numel()},
    )
    assert report.uncounted == []
    assert report.layer("1").macs == 4 * 25 * 18
    assert report.macs == 2 * 25 + 4 * 25 * 18


def test_override_wins_over_plugins():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(2, 2, 1))
    report = pk.count(model, torch.zeros(1, 1, 5, 5), overrides={nn.Conv2d: lambda m, s: 7})
    assert report.macs == 14


def test_dotted_overrides_as_in_yaml(tmp_path, monkeypatch):
    (tmp_path / "mylayers.py").write_text(
        textwrap.dedent("""
        import torch
        from torch import nn

        class Scale(nn.Module):
            def __init__(self):
                super().__init__()
                self.gain = nn.Parameter(torch.ones(1))

            def forward(self, x):
                return x * self.gain

        def scale_cost(module, shape):
            return 3 * shape.output[1]
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import mylayers

    report = pk.count(
        nn.Sequential(mylayers.Scale()), torch.zeros(1, 6, 2, 2), overrides={"mylayers.Scale": "mylayers:scale_cost"}
    )
    assert report.macs == 18
    with pytest.raises(pk.ConfigError, match="mylayers:nope"):
        pk.count(
            nn.Sequential(mylayers.Scale()), torch.zeros(1, 6, 2, 2), overrides={"mylayers.Scale": "mylayers:nope"}
        )


def test_model_without_meta_support_falls_back_to_a_real_forward():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3, padding=1)

        def forward(self, x):
            scale = float(x.abs().sum().item()) + 1.0  # .item() cannot run on the meta device
            return self.conv(x) * scale

    report = pk.count(DataDependent(), torch.ones(1, 1, 4, 4))
    assert report.fallback and "real forward" in report.fallback
    assert report.macs == 3 * 16 * 9


def test_blocks_default_to_parent_modules_and_table_renders():
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), nn.Conv2d(2, 2, 1))
    report = pk.count(model, torch.zeros(1, 1, 6, 6))
    assert {b.name: b.macs for b in report.blocks} == {"0": 2 * 16 * 9, "1": 2 * 16 * 2}
    text = report.table(depth=1)
    assert "total:" in text and text.count("\n") > 4


def test_include_rejects_unknown_kind():
    with pytest.raises(pk.ConfigError, match="did you mean 'norm'"):
        pk.count(nn.Conv2d(1, 1, 1), torch.zeros(1, 1, 2, 2), include=["nrm"])


def test_model_failing_on_the_input_is_a_prune_error():
    with pytest.raises(pk.PruneError, match="failed on the example input"):
        pk.count(nn.Conv2d(3, 1, 1), torch.zeros(1, 2, 4, 4))
