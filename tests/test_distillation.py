"""Distillation losses against hand-computed values, and with a student pruned below the teacher."""

import math

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.plugins.distillation.losses import fsp_matrix

# softmax [3/4, 1/4] against [1/2, 1/2]
KL = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)


def out(logits=None, **features):
    logits = torch.zeros(1, 2, 1, 2) if logits is None else logits
    return pk.Outputs(logits, features)


def fmap(*rows):
    """1×C×1×W features from one W-vector per channel."""
    return torch.tensor(rows, dtype=torch.float32)[None, :, None, :]


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_hinton_multiplies_by_t_squared_and_averages_over_pixels_not_classes(T):
    student = torch.zeros(1, 2, 1, 2)
    teacher = torch.tensor([[T * math.log(3), 0.0], [0.0, 0.0]]).T[None, :, None, :]  # pixels [ln3·T, 0], [0, 0]
    loss = pk.get("distillation", "hinton", T=T)(out(student), out(teacher))
    assert loss.item() == pytest.approx(T**2 * (KL + 0) / 2, rel=1e-5)
    assert pk.get("distillation", "hinton").taps == ()


def test_attention_maps_are_normalised_so_feature_scale_does_not_matter():
    # student Q = mean_c F² = [1, 2] → [1, 2]/√5; teacher Q = [9, 0] → [1, 0]
    student, teacher = fmap([1, 2], [1, 0]), fmap([3, 0])
    loss = pk.get("distillation", "attention", taps=["f"])
    expected = math.sqrt(2 - 2 / math.sqrt(5))
    assert loss(out(f=student), out(f=teacher)).item() == pytest.approx(expected, rel=1e-5)
    assert loss(out(f=7 * student), out(f=0.1 * teacher)).item() == pytest.approx(expected, rel=1e-5)
    p1 = pk.get("distillation", "attention", p=1, taps=["f"])  # Q = [1, 1] → [1, 1]/√2
    assert p1(out(f=student), out(f=teacher)).item() == pytest.approx(math.sqrt(2 - math.sqrt(2)), rel=1e-5)


def test_attention_resizes_the_student_map_and_averages_over_batch_and_taps():
    # 2×4 student map Q = F², bilinear ×½ gives block means [1, 2], as in the test above
    student = torch.tensor([[1.0, 1, 2, 0], [1, 1, 0, 2]])[None, None]
    teacher = fmap([3, 0])
    expected = math.sqrt(2 - 2 / math.sqrt(5))
    loss = pk.get("distillation", "attention")  # taps=None: every tap the trainer recorded
    assert loss(out(f=student), out(f=teacher)).item() == pytest.approx(expected, rel=1e-5)
    batch = out(f=torch.cat([fmap([1, 2], [1, 0]), fmap([3, 0], [0, 0])]), g=fmap([1, 1]).repeat(2, 1, 1, 1))
    target = out(f=torch.cat([fmap([3, 0]), fmap([3, 0])]), g=fmap([2, 2]).repeat(2, 1, 1, 1))
    assert loss(batch, target).item() == pytest.approx((expected / 2 + 0) / 2, rel=1e-5)


def test_fsp_matrix_by_hand_with_pooling_to_the_smaller_map():
    a = fmap([1, 2], [0, 1])
    b = fmap([3, 4])
    assert fsp_matrix(a, b)[0].tolist() == [[5.5], [2.0]]  # ½·[1·3 + 2·4, 0·3 + 1·4]
    large = torch.tensor([[2.0, 4, 5, 3], [4, 2, 3, 5]])[None, None]  # 2×2 block means [3, 4]
    assert fsp_matrix(fmap([1, 2]), large)[0].tolist() == [[5.5]]


def test_fsp_loss_is_the_mean_squared_difference_of_the_matrices():
    loss = pk.get("distillation", "fsp", taps=["a", "b"])
    teacher = out(a=fmap([1, 2], [0, 1]), b=fmap([3, 4]))
    student = out(a=fmap([1, 2], [0, 1]), b=fmap([1, 0]))  # G = [[0.5], [0]] against [[5.5], [2]]
    assert loss(student, teacher).item() == pytest.approx((25 + 4) / 2)
    with pytest.raises(pk.ConfigError, match="two taps"):
        pk.get("distillation", "fsp", taps=["a"])


def test_cwd_is_a_spatial_softmax_kl_times_tau_squared_averaged_over_terms_and_channels():
    tau = 2.0
    teacher = fmap([tau * math.log(3), 0.0])  # one channel: spatial softmax [3/4, 1/4]
    student = fmap([0.0, 0.0])
    features_only = pk.get("distillation", "cwd", tau=tau, taps=["f"], logits=False)
    assert features_only(out(f=student), out(f=teacher)).item() == pytest.approx(tau**2 * KL, rel=1e-5)
    two_channels = out(f=torch.cat([student, teacher], 1)), out(f=torch.cat([teacher, teacher], 1))
    assert features_only(*two_channels).item() == pytest.approx(tau**2 * KL / 2, rel=1e-5)
    with_logits = pk.get("distillation", "cwd", tau=tau, taps=["f"])  # the logits agree: a zero term
    assert with_logits(out(f=student), out(f=teacher)).item() == pytest.approx(tau**2 * KL / 2, rel=1e-5)
    assert pk.get("distillation", "cwd", taps=()).taps == ()


@pytest.mark.parametrize("name", ["hinton", "attention", "fsp", "cwd"])
def test_losses_are_zero_when_student_equals_teacher(name):
    torch.manual_seed(0)
    features = {"a": torch.randn(2, 3, 4, 4), "b": torch.randn(2, 5, 2, 2)}
    same = pk.Outputs(torch.randn(2, 4, 4, 4), features)
    loss = pk.get("distillation", name)
    assert loss(same, same).item() == pytest.approx(0, abs=1e-6)


class Pair(nn.Module):
    """Two convs; their outputs are the taps "0" and "1", the second is the logits."""

    def __init__(self, widths=(4, 3)):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(1, widths[0], 3, padding=1), nn.Conv2d(widths[0], widths[1], 1))

    def forward(self, x):
        first = self.convs[0](x)
        second = self.convs[1](first)
        return pk.Outputs(second, {"0": first, "1": second})

    def pruned(self, keep):
        """A copy without the first conv's other output channels (and the second's inputs)."""
        small = Pair((len(keep), self.convs[1].out_channels))
        with torch.no_grad():
            small.convs[0].weight.copy_(self.convs[0].weight[keep])
            small.convs[0].bias.copy_(self.convs[0].bias[keep])
            small.convs[1].weight.copy_(self.convs[1].weight[:, keep])
            small.convs[1].bias.copy_(self.convs[1].bias)
        return small


@pytest.fixture
def models():
    torch.manual_seed(0)
    teacher = Pair().requires_grad_(False)
    return teacher, teacher.pruned([0, 2]), torch.randn(2, 1, 6, 6)


@pytest.mark.parametrize("name", ["fsp", "cwd"])
def test_pruned_student_gets_adapters_that_train_with_it(name, models):
    teacher, student, x = models
    loss = pk.get("distillation", name, taps=["0", "1"])
    with torch.no_grad():
        loss.setup(student(x), teacher(x))
    adapter = loss.adapters.convs["0"]
    assert (adapter.in_channels, adapter.out_channels) == (2, 4) and list(loss.adapters.convs) == ["0"]
    value = loss(student(x + 1), teacher(x + 1))
    value.backward()
    assert torch.isfinite(value) and value.item() > 0
    assert adapter.weight.grad.abs().sum() > 0
    assert student.convs[0].weight.grad.abs().sum() > 0
    assert any(p is adapter.weight for p in loss.parameters())


@pytest.mark.parametrize("name", ["fsp", "cwd"])
def test_setup_recreates_adapters_only_when_counts_change(name, models):
    teacher, student, x = models
    loss = pk.get("distillation", name, taps=["0", "1"])
    with torch.no_grad():
        loss.setup(student(x), teacher(x))
        first = loss.adapters.convs["0"]
        loss.setup(student(x), teacher(x))
        assert loss.adapters.convs["0"] is first  # unchanged counts keep the trained adapter
        smaller = teacher.pruned([1])
        loss.setup(smaller(x), teacher(x))
        assert loss.adapters.convs["0"].in_channels == 1
        loss.setup(teacher(x), teacher(x))
    assert len(loss.adapters.convs) == 0
    with pytest.raises(pk.ConfigError, match="setup"):
        loss(smaller(x), teacher(x))


def test_adapters_start_at_the_least_squares_map_from_kept_to_teacher_channels():
    # teacher channels 1 and 3 are linear in channels 0 and 2, the ones the student kept
    torch.manual_seed(0)
    base = torch.randn(2, 2, 5, 5)
    full = torch.stack([base[:, 0], 2 * base[:, 0] - base[:, 1] + 0.5, base[:, 1], base[:, 1]], 1)
    second = torch.randn(2, 3, 5, 5)
    student, teacher = pk.Outputs(second, {"a": base, "b": second}), pk.Outputs(second, {"a": full, "b": second})
    for name in ("fsp", "cwd"):
        loss = pk.get("distillation", name, taps=["a", "b"])
        loss.setup(student, teacher)
        assert torch.allclose(loss.adapters.convs["a"](base), full, atol=1e-3)
        assert loss(student, teacher).item() == pytest.approx(0, abs=1e-4)


@pytest.mark.parametrize("name", ["hinton", "attention", "fsp", "cwd"])
def test_teacher_outputs_and_parameters_stay_unchanged(name, models):
    teacher, student, x = models
    teacher.requires_grad_(True)  # even an unfrozen teacher must get no gradient from the loss
    loss = pk.get("distillation", name, **({} if name == "hinton" else {"taps": ["0", "1"]}))
    if hasattr(loss, "setup"):
        with torch.no_grad():
            loss.setup(student(x), teacher(x))
    params = [p.clone() for p in teacher.parameters()]
    target = teacher(x)
    kept = pk.Outputs(target.logits.clone(), {k: v.clone() for k, v in target.features.items()})
    loss(student(x), target).backward()
    assert torch.equal(target.logits, kept.logits)
    assert all(torch.equal(target.features[k], kept.features[k]) for k in kept.features)
    assert all(torch.equal(p, q) and p.grad is None for p, q in zip(teacher.parameters(), params))
