"""Task losses and segmentation metrics against values computed by hand on tiny tensors."""

import math

import pytest
import torch

import prunekit as pk
from prunekit.plugins.losses.task_losses import boundary_pixels, distance_maps
from prunekit.plugins.tasks.segmentation import ConfusionMatrix

LN2, LN43 = math.log(2), math.log(4 / 3)


def row_logits(*pixels):
    """1×K×1×W logits from one K-vector per pixel."""
    return torch.tensor(pixels, dtype=torch.float32).T[None, :, None, :]


def row_mask(*labels):
    return torch.tensor(labels)[None, None, :]


# pixel 0: [0, 0] → ce ln 2 for either class; pixel 1: [ln 3, 0] with class 0 → ce ln(4/3)
CE_LOGITS = row_logits([0.0, 0.0], [math.log(3), 0.0], [0.0, 0.0])


def test_cross_entropy_is_the_plain_mean_without_weights():
    loss = pk.get("task_loss", "cross_entropy")(CE_LOGITS, {"target": row_mask(0, 0, 1)})
    assert loss.item() == pytest.approx((LN2 + LN43 + LN2) / 3, rel=1e-6)


def test_boundary_pixels_are_those_with_another_class_in_their_3x3_neighbourhood():
    mask = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])[None]
    expected = torch.tensor(
        [[0, 0, 0, 0], [0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 0]], dtype=torch.bool
    )  # the image edge is no boundary
    assert torch.equal(boundary_pixels(mask)[0], expected)


def test_cross_entropy_boundary_weights_give_a_weighted_mean():
    # mask 0 0 1: pixel 0 sees only class 0 (weight 1), pixels 1 and 2 see both (weight 1 + 20)
    loss = pk.get("task_loss", "cross_entropy", boundary_weight=20)(CE_LOGITS, {"target": row_mask(0, 0, 1)})
    assert loss.item() == pytest.approx((LN2 + 21 * LN43 + 21 * LN2) / 43, rel=1e-6)


def test_cross_entropy_class_weights_multiply_the_pixel_weights():
    batch = {"target": row_mask(0, 0, 1)}
    loss = pk.get("task_loss", "cross_entropy", class_weights=[1.0, 3.0])(CE_LOGITS, batch)
    assert loss.item() == pytest.approx((LN2 + LN43 + 3 * LN2) / 5, rel=1e-6)
    both = pk.get("task_loss", "cross_entropy", class_weights=[1.0, 3.0], boundary_weight=1)(CE_LOGITS, batch)
    assert both.item() == pytest.approx((LN2 + 2 * LN43 + 6 * LN2) / 9, rel=1e-6)


def test_generalized_dice_weights_are_inverse_squared_volumes():
    # mask 0 0 0 1, p = 1/2 everywhere: w = (16/9, 16); intersections (3/2, 1/2), unions (5, 3)
    # 1 − 2(16/9·3/2 + 16·1/2) / (16/9·5 + 16·3) = 1 − 0.375 (raw counts, w = (1/9, 1), give the same)
    loss = pk.get("task_loss", "generalized_dice", epsilon=0.0)
    value = loss(torch.zeros(1, 2, 1, 4), {"target": row_mask(0, 0, 0, 1)})
    assert value.item() == pytest.approx(0.625, rel=1e-6)


def test_generalized_dice_gives_an_absent_class_the_largest_present_weight():
    # K = 3, class 2 absent, p = 1/3: w = (16/9, 16, 16), I = (1, 1/3, 0), U = (13/3, 7/3, 4/3)
    loss = pk.get("task_loss", "generalized_dice", epsilon=0.0)
    value = loss(torch.zeros(1, 3, 1, 4), {"target": row_mask(0, 0, 0, 1)})
    assert value.item() == pytest.approx(1 - 3 / 14, rel=1e-6)


def test_generalized_dice_is_zero_when_perfect_and_weighted_per_sample():
    # sample 0 is perfect; sample 1 mirrors the case above (0.625 with its own weights, 0.5 with
    # weights shared across the batch)
    mask = torch.cat([row_mask(0, 0, 0, 1), row_mask(0, 1, 1, 1)])
    logits = torch.zeros(2, 2, 1, 4)
    logits[0] = 50 * torch.nn.functional.one_hot(mask[0], 2).permute(2, 0, 1)
    loss = pk.get("task_loss", "generalized_dice")(logits, {"target": mask})
    assert loss.item() == pytest.approx(0.625 / 2, rel=1e-4)


def test_signed_distance_maps_are_negative_inside_and_positive_outside():
    maps = distance_maps(row_mask(1, 1, 1, 0, 0), 3, normalize=False)[0]
    assert maps[0, 0].tolist() == [3, 2, 1, 0, -1]
    assert maps[1, 0].tolist() == [-2, -1, 0, 1, 2]
    assert maps[2].abs().sum() == 0  # absent class: no border, no pull
    square = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 0]])[None]
    phi = distance_maps(square, 2, normalize=False)[0, 1]
    assert torch.allclose(phi, torch.tensor([[-1, 0, 1], [0, 0, 1], [1, 1, math.sqrt(2)]], dtype=phi.dtype))
    assert distance_maps(torch.zeros(1, 2, 2, dtype=torch.long), 2, normalize=False).abs().sum() == 0


def test_surface_loss_is_the_mean_of_softmax_times_distance():
    # p = 1/2; φ sums 5 (class 0) and 0 (class 1) over 5 pixels: 0.5 · 5 / 10
    batch = {"target": row_mask(1, 1, 1, 0, 0)}
    raw = pk.get("task_loss", "surface", normalize=False)(torch.zeros(1, 2, 1, 5), batch)
    assert raw.item() == pytest.approx(0.25)
    scaled = pk.get("task_loss", "surface")(torch.zeros(1, 2, 1, 5), batch)
    assert scaled.item() == pytest.approx(0.25 / 4)  # image diagonal hypot(0, 4)


def test_surface_loss_uses_precomputed_maps_and_falls_with_mass_inside_the_class():
    loss = pk.get("task_loss", "surface")
    batch = {"target": row_mask(1, 1, 1, 0, 0), "dist": torch.ones(1, 2, 1, 5)}
    assert loss(torch.zeros(1, 2, 1, 5), batch).item() == pytest.approx(0.5)
    logits = torch.zeros(1, 2, 1, 5, requires_grad=True)
    loss(logits, {"target": batch["target"]}).backward()
    assert (logits.grad[0, 1, 0, :2] < 0).all() and (logits.grad[0, 1, 0, 3:] > 0).all()


@pytest.mark.parametrize("name", ["cross_entropy", "generalized_dice", "surface"])
def test_task_losses_are_finite_scalars_with_gradients(name):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 5, requires_grad=True)
    mask = torch.randint(0, 3, (2, 6, 5))
    value = pk.get("task_loss", name)(logits, {"target": mask, "image": torch.zeros(2, 1, 6, 5)})
    value.backward()
    assert value.dim() == 0 and torch.isfinite(value)
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


# true 0 0 1 1 2 2 | predicted 0 1 1 1 2 0, K = 4 (class 3 nowhere)
TRUE, PRED = row_mask(0, 0, 1, 1, 2, 2), row_mask(0, 1, 1, 1, 2, 0)
COUNTS = [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]


def test_confusion_matrix_iou_f1_and_accuracy_by_hand():
    cm = ConfusionMatrix(4)
    cm.update(PRED, {"target": TRUE})
    assert cm.state.tolist() == COUNTS
    iou, f1 = cm.iou(), cm.f1()
    assert iou[:3].tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert f1[:3].tolist() == pytest.approx([1 / 2, 4 / 5, 2 / 3])
    summary = cm.compute()
    # the absent class 3 is left out: counted as 0 or 1 the mean would be 0.375 or 0.625
    assert math.isnan(iou[3]) and summary["miou"] == pytest.approx(0.5)
    assert summary["mean_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert summary["pixel_accuracy"] == pytest.approx(4 / 6)


def test_confusion_matrix_counts_a_class_predicted_but_absent_as_zero():
    cm = ConfusionMatrix(4)
    cm.update(row_mask(0, 1, 1, 1, 2, 3), {"target": TRUE})
    assert cm.iou()[3].item() == 0
    assert cm.compute()["miou"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2 + 0) / 4)


def test_confusion_matrix_takes_logits_ignores_labels_out_of_range_and_adds_up():
    logits = 10 * torch.nn.functional.one_hot(PRED, 4).permute(0, 3, 1, 2).float()
    first, second = ConfusionMatrix(4), ConfusionMatrix(4)
    assert math.isnan(first.compute()["miou"])
    first.update(logits[..., :3], {"target": TRUE[..., :3]})
    second.update(logits[..., 3:], {"target": TRUE[..., 3:]})
    second.update(row_mask(0, 0), {"target": row_mask(255, 255)})
    first.state += second.state  # what summing over processes does
    assert first.state.tolist() == COUNTS
