"""The dataset plugins (synthetic_eyes, image_folder) and the transforms they share."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import prunekit as pk
from prunekit.plugins.data import synthetic_eyes
from prunekit.plugins.data.transforms import Transforms, clahe, flip_rng, resize_mask


def eyes(**args):
    return pk.get("dataset", "synthetic_eyes", **args)


def same(a, b):
    return torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])


# -- synthetic_eyes ----------------------------------------------------------------------------


def test_both_datasets_are_registered():
    assert {"synthetic_eyes", "image_folder"} <= set(pk.manager().names("dataset"))


def test_same_seed_same_samples_in_both_splits():
    first, second = eyes(seed=3), eyes(seed=3)
    assert same(first.train[5], second.train[5])
    assert same(first.val[2], second.val[2])


def test_other_seed_or_index_gives_other_samples():
    data = eyes(seed=3)
    assert not torch.equal(data.train[5]["image"], eyes(seed=4).train[5]["image"])
    assert not torch.equal(data.train[5]["image"], data.train[6]["image"])


def test_train_and_val_are_disjoint_streams():
    data = eyes(n_train=24, n_val=24)
    train = {data.train[i]["image"].numpy().tobytes() for i in range(24)}
    val = {data.val[i]["image"].numpy().tobytes() for i in range(24)}
    assert len(train) == len(val) == 24 and not train & val


def test_items_have_the_contract_types_and_ranges():
    data = eyes(n_train=7, n_val=3)
    assert (len(data.train), len(data.val), data.n_classes, data.in_channels) == (7, 3, 4, 1)
    assert data.class_names == ("skin", "sclera", "iris", "pupil")
    item = data.train[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 96, 160)
    assert item["target"].dtype == torch.int64 and item["target"].shape == (96, 160)
    assert -1 <= item["image"].min() < item["image"].max() <= 1
    with pytest.raises(IndexError):
        data.train[7]


def test_a_batch_holds_every_class_in_sensible_amounts():
    batch = torch.utils.data.default_collate([eyes().train[i] for i in range(16)])
    share = torch.bincount(batch["target"].flatten(), minlength=4) / batch["target"].numel()
    assert share.shape == (4,) and (share > 0.005).all()
    assert share[0] == share.max()  # skin is the largest class, as in real eye crops


def test_two_class_mode_labels_exactly_the_sclera():
    four, two = eyes(seed=1).train[3], eyes(seed=1, n_classes=2).train[3]
    assert torch.equal(two["image"], four["image"])
    assert torch.equal(two["target"], (four["target"] == 1).long())
    assert eyes(n_classes=2).class_names == ("rest", "sclera")


@pytest.mark.parametrize("size", [(64, 64), (100, 180), (17, 300)])
def test_any_size_gives_whole_eyes(size):
    data = eyes(size=list(size), n_train=8)
    items = [data.train[i] for i in range(8)]
    assert all(item["image"].shape == (1, *size) and item["target"].shape == size for item in items)
    assert set(torch.cat([item["target"].flatten() for item in items]).tolist()) == {0, 1, 2, 3}


def test_eyelids_hide_the_iris_in_the_mask():
    rng = np.random.default_rng(0)
    eye = dataclasses.replace(synthetic_eyes.sample_eye(rng, 96, 160), angle=0.0, upper=3.0, iris_y=0.0)
    geometry = synthetic_eyes.Geometry(eye, 96, 160)
    mask = geometry.labels(4)
    box = geometry.iris_box
    covered = (geometry.iris < 0) & (geometry.opening[box] >= 0)
    assert covered.sum() > 100  # most of the iris disc is under the lids ...
    assert (mask[box][covered] == 0).all()  # ... and labelled skin there
    assert ((mask > 0) == (geometry.opening < 0)).all()


def test_flips_move_image_and_mask_together_on_train_only():
    plain, flipped = eyes(transforms={"hflip": 1.0}), eyes()
    item, reference = plain.train[4], flipped.train[4]
    assert torch.equal(item["image"], reference["image"].flip(-1))
    assert torch.equal(item["target"], reference["target"].flip(-1))
    assert same(plain.val[4], flipped.val[4])
    upside_down = eyes(transforms={"vflip": 1.0}).train[4]
    assert torch.equal(upside_down["target"], reference["target"].flip(-2))


def test_random_flips_are_seeded_and_change_with_the_epoch():
    data = eyes(n_train=16, transforms={"hflip": 0.5})
    masks = lambda: [data.train[i]["target"] for i in range(16)]
    plain = [eyes(n_train=16).train[i]["target"] for i in range(16)]
    epoch0 = masks()
    flipped = [torch.equal(m, p.flip(-1)) for m, p in zip(epoch0, plain)]
    assert 0 < sum(flipped) < 16
    assert all(torch.equal(a, b) for a, b in zip(epoch0, masks()))
    data.train.set_epoch(1)
    assert any(not torch.equal(a, b) for a, b in zip(epoch0, masks()))


@pytest.mark.parametrize(
    "args, words",
    [
        ({"size": (8, 8)}, "size"),
        ({"size": "big"}, "size"),
        ({"n_train": 0}, "n_train"),
        ({"n_val": 2.5}, "n_val"),
        ({"n_classes": 3}, r"n_classes: 3 is not allowed; valid: 2, 4"),
        ({"seed": -1}, "seed"),
        ({"transforms": {"hfilp": 0.5}}, "did you mean 'hflip'"),
        ({"transforms": {"hflip": 2}}, "hflip"),
        ({"transforms": {"clahe": "yes"}}, "clahe"),
        ({"transforms": {"resize": [0, 4]}}, "resize"),
    ],
)
def test_bad_arguments_are_config_errors_naming_the_argument(args, words):
    with pytest.raises(pk.ConfigError, match=words) as error:
        eyes(**args)
    assert "\n" not in str(error.value)


# -- transforms --------------------------------------------------------------------------------


def test_clahe_keeps_a_uniform_image_uniform():
    out = clahe(np.full((32, 48), 77, np.uint8))
    assert out.dtype == np.uint8 and len(np.unique(out)) == 1


def test_clahe_is_monotonic_within_a_tile():
    image = np.random.default_rng(0).integers(0, 256, (20, 30)).astype(np.uint8)
    out = clahe(image, tiles=(1, 1)).ravel()
    order = np.argsort(image.ravel(), kind="stable")
    assert (np.diff(out[order].astype(int)) >= 0).all()
    assert out.max() == 255


def test_clahe_clips_the_histogram_and_redistributes_the_excess():
    image = np.array([[0] * 8, [255] * 8], np.uint8).reshape(4, 4)
    # no clipping: half the pixels are at 0, so 0 maps to 255 · 8/16
    assert set(clahe(image, tiles=(1, 1), clip_limit=1000).ravel().tolist()) == {128, 255}
    # limit 1 per bin: 14 clipped counts return one each to bins 0, 18, 36, …, so 0 keeps 2/16
    assert set(clahe(image, tiles=(1, 1), clip_limit=1.5).ravel().tolist()) == {32, 255}


def test_clahe_interpolates_bilinearly_between_tile_mappings():
    row = [0, 0, 100, 100, 100, 100, 200, 200]  # left tile {0, 100}, right tile {100, 200}
    out = clahe(np.array([row, row], np.uint8), tiles=(1, 2), clip_limit=1000)[0]
    # left maps 0 -> 128, 100 -> 255; right maps 100 -> 128, 200 -> 255. Tile centres at x = 1.5
    # and 5.5 (pixel x sits at x / 4 - 0.5 tiles): x = 3 is 3/4 left, x = 5 is 1/4 left.
    assert out.tolist() == [128, 128, 255, 223, 192, 160, 255, 255]


def test_transforms_scale_to_minus_one_one():
    image = np.array([[0, 51, 255]], np.uint8)
    linear = Transforms(clahe=False)(image, np.zeros((1, 3), np.int64))
    assert torch.allclose(linear["image"], torch.tensor([[[-1.0, -0.6, 1.0]]]))
    equalised = Transforms()(
        np.random.default_rng(0).integers(0, 256, (40, 60)).astype(np.uint8), np.zeros((40, 60), np.int64)
    )
    assert equalised["image"].shape == (1, 40, 60)
    assert -1 <= equalised["image"].min() < equalised["image"].max() <= 1


def test_transforms_resize_keeps_mask_values_and_handles_rgb():
    mask = np.array([[0, 1], [2, 3]])
    assert resize_mask(mask, (4, 4)).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    rgb = np.random.default_rng(1).integers(0, 256, (30, 50, 3)).astype(np.uint8)
    item = Transforms(resize=(15, 20))(rgb, np.arange(1500).reshape(30, 50) % 4)
    assert item["image"].shape == (3, 15, 20) and item["target"].shape == (15, 20)
    assert set(item["target"].unique().tolist()) <= {0, 1, 2, 3}


def test_flip_generator_is_a_function_of_seed_index_and_epoch():
    assert flip_rng(1, 2, 3).random() == flip_rng(1, 2, 3).random()
    assert len({flip_rng(1, 2, 3).random(), flip_rng(1, 2, 4).random(), flip_rng(1, 3, 3).random()}) == 3


def test_unknown_transform_key_lists_the_valid_ones():
    expected = r"unknown key 'clahee'; did you mean 'clahe'\? valid: clahe, hflip, resize, vflip"
    with pytest.raises(pk.ConfigError, match=expected):
        Transforms.from_config({"clahee": True})


# -- image_folder ------------------------------------------------------------------------------

PALETTE = {(0, 0, 0): 0, (255, 0, 0): 1, (0, 255, 0): 2}


def index_mask(seed, shape=(12, 16), n_classes=3):
    return np.random.default_rng(seed).integers(0, n_classes, shape).astype(np.uint8)


def write_pair(folder, stem, mask, image=None, suffix=".png", mask_mode="L"):
    """Write images/<stem><suffix> and masks/<stem>.png under ``folder``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    if image is None:
        image = (mask.astype(np.uint8) * 60 + 20) if mask.ndim == 2 else mask[..., 0]
    Image.fromarray(image).save(folder / "images" / f"{stem}{suffix}")
    Image.fromarray(mask).convert(mask_mode).save(folder / "masks" / f"{stem}.png")


def folder(**args):
    return pk.get("dataset", "image_folder", **args)


def test_index_masks_are_read_as_class_indices(tmp_path):
    masks = {f"eye{i}": index_mask(i) for i in range(5)}
    for stem, mask in masks.items():
        write_pair(tmp_path, stem, mask)
    data = folder(root=str(tmp_path), n_classes=3, val_fraction=0.4)
    assert (len(data.train), len(data.val), data.in_channels) == (3, 2, 1)
    for split in (data.train, data.val):
        for index, (image_path, mask_path) in enumerate(split.pairs):
            item = split[index]
            assert image_path.stem == mask_path.stem
            assert item["target"].dtype == torch.int64
            assert np.array_equal(item["target"].numpy(), masks[mask_path.stem])
            assert item["image"].shape == (1, 12, 16) and item["image"].dtype == torch.float32


def test_palette_masks_hold_indices_and_jpg_images_are_read(tmp_path):
    mask = index_mask(0, n_classes=4)
    write_pair(tmp_path, "a", mask, suffix=".jpg", mask_mode="P")
    write_pair(tmp_path, "b", mask, mask_mode="P")
    data = folder(root=tmp_path, n_classes=4, channels=3)
    item = data.train[0]
    assert item["image"].shape == (3, 12, 16)
    assert np.array_equal(item["target"].numpy(), mask)


def test_seeded_split_is_reproducible_and_covers_every_pair(tmp_path):
    for i in range(10):
        write_pair(tmp_path, f"{i:02d}", index_mask(i))
    stems = lambda data, split: [p[0].stem for p in getattr(data, split).pairs]
    first = folder(root=tmp_path, n_classes=3, val_fraction=0.3)
    again = folder(root=tmp_path, n_classes=3, val_fraction=0.3)
    assert len(stems(first, "val")) == 3 and stems(first, "val") == stems(again, "val")
    assert sorted(stems(first, "train") + stems(first, "val")) == [f"{i:02d}" for i in range(10)]
    others = {tuple(stems(folder(root=tmp_path, n_classes=3, seed=s), "val")) for s in range(1, 6)}
    assert len(others | {tuple(stems(first, "val"))}) > 1


def test_sub_folders_give_the_split(tmp_path):
    for i in range(3):
        write_pair(tmp_path / "train", f"t{i}", index_mask(i))
    write_pair(tmp_path / "val", "v0", index_mask(9))
    data = folder(root=tmp_path, n_classes=3)
    assert [p[0].stem for p in data.train.pairs] == ["t0", "t1", "t2"]
    assert [p[0].stem for p in data.val.pairs] == ["v0"]
    assert np.array_equal(data.val[0]["target"].numpy(), index_mask(9))


def colour_mask(labels):
    colours = {index: colour for colour, index in PALETTE.items()}
    return np.array([[colours[v] for v in row] for row in labels], np.uint8)


@pytest.mark.parametrize(
    "colors",
    [
        {"#000000": 0, "#ff0000": 1, "#00ff00": 2},
        {(0, 0, 0): 0, (255, 0, 0): 1, (0, 255, 0): 2},
        [[[0, 0, 0], 0], [[255, 0, 0], 1], ["#00FF00", 2]],
    ],
)
def test_colour_masks_are_mapped_through_colors(tmp_path, colors):
    labels = [index_mask(i) for i in range(2)]
    for i, label in enumerate(labels):
        write_pair(tmp_path, f"c{i}", colour_mask(label), image=label * 50, mask_mode="RGB")
    data = folder(root=tmp_path, n_classes=3, colors=colors, val_fraction=0.5)
    for split in (data.train, data.val):
        expected = labels[int(split.pairs[0][1].stem[1])]
        assert np.array_equal(split[0]["target"].numpy(), expected)


def test_size_resizes_images_and_masks_and_train_flips(tmp_path):
    for i in range(2):
        write_pair(tmp_path, f"s{i}", index_mask(i, shape=(24, 32)))
    data = folder(root=tmp_path, n_classes=3, size=[12, 20], val_fraction=0.5, transforms={"hflip": 1.0})
    plain = folder(root=tmp_path, n_classes=3, size=[12, 20], val_fraction=0.5)
    assert data.train[0]["image"].shape == (1, 12, 20)
    assert torch.equal(data.train[0]["target"], plain.train[0]["target"].flip(-1))
    assert torch.equal(data.val[0]["target"], plain.val[0]["target"])


def test_missing_mask_names_the_image(tmp_path):
    write_pair(tmp_path, "a", index_mask(0))
    Image.fromarray(index_mask(1)).save(tmp_path / "images" / "lonely.png")
    expected = r"image '.*lonely\.png' has no mask \(expected '.*masks/lonely\.png'\)"
    with pytest.raises(pk.DataError, match=expected):
        folder(root=tmp_path, n_classes=3)


def test_missing_image_names_the_mask(tmp_path):
    write_pair(tmp_path, "a", index_mask(0))
    Image.fromarray(index_mask(1)).save(tmp_path / "masks" / "orphan.png")
    with pytest.raises(pk.DataError, match=r"mask '.*orphan\.png' has no image"):
        folder(root=tmp_path, n_classes=3)


def test_missing_folders_are_named(tmp_path):
    with pytest.raises(pk.DataError, match=r"root folder not found: '.*nowhere'"):
        folder(root=tmp_path / "nowhere", n_classes=3)
    (tmp_path / "images").mkdir()
    with pytest.raises(pk.DataError, match=r"folder not found: '.*masks'"):
        folder(root=tmp_path, n_classes=3)
    write_pair(tmp_path / "train", "t", index_mask(0))
    with pytest.raises(pk.DataError, match=r"folder not found: '.*val'"):
        folder(root=tmp_path, n_classes=3)


def test_a_single_pair_cannot_be_split(tmp_path):
    write_pair(tmp_path, "only", index_mask(0))
    with pytest.raises(pk.DataError, match="at least 2 image/mask pairs"):
        folder(root=tmp_path, n_classes=3)


def loaded_error(tmp_path, **args):
    """Build from tmp_path (two pairs a, b, plus what the test wrote) and load every item."""
    data = folder(root=tmp_path, n_classes=3, val_fraction=0.5, **args)
    with pytest.raises(pk.DataError) as error:
        for split in (data.train, data.val):
            for index in range(len(split)):
                split[index]
    message = str(error.value)
    assert "\n" not in message
    return message


def test_size_mismatch_names_both_files(tmp_path):
    write_pair(tmp_path, "a", index_mask(0), image=np.zeros((10, 16), np.uint8))
    write_pair(tmp_path, "b", index_mask(1))
    message = loaded_error(tmp_path)
    assert "a.png' is 10×16 but its mask" in message and "masks/a.png' is 12×16" in message


def test_class_value_out_of_range_names_value_and_n_classes(tmp_path):
    bad = index_mask(0)
    bad[3, 4] = 7
    write_pair(tmp_path, "a", bad)
    write_pair(tmp_path, "b", index_mask(1))
    message = loaded_error(tmp_path)
    assert "masks/a.png' holds class value 7, but n_classes is 3 (values 0..2)" in message


def test_unknown_colour_is_named_with_the_file(tmp_path):
    labels = index_mask(0)
    mask = colour_mask(labels)
    mask[2, 5] = (0x12, 0x34, 0x56)
    write_pair(tmp_path, "a", mask, image=labels, mask_mode="RGB")
    write_pair(tmp_path, "b", colour_mask(labels), image=labels, mask_mode="RGB")
    message = loaded_error(tmp_path, colors={"#000000": 0, "#ff0000": 1, "#00ff00": 2})
    assert "masks/a.png' has colour #123456 at row 2, column 5, which is not in colors" in message


def test_rgb_mask_without_colors_asks_for_them(tmp_path):
    write_pair(tmp_path, "a", colour_mask(index_mask(0)), image=index_mask(0), mask_mode="RGB")
    write_pair(tmp_path, "b", index_mask(1))
    message = loaded_error(tmp_path)
    assert "masks/a.png' has mode RGB" in message and "need the colors argument" in message


@pytest.mark.parametrize("content", [b"not an image at all", "truncated"])
def test_corrupt_file_is_named(tmp_path, content):
    write_pair(tmp_path, "a", index_mask(0))
    write_pair(tmp_path, "b", index_mask(1))
    path = tmp_path / "images" / "a.png"
    data = path.read_bytes()
    path.write_bytes(content if isinstance(content, bytes) else data[: len(data) // 2])
    message = loaded_error(tmp_path)
    assert "cannot read image '" in message and "images/a.png" in message


@pytest.mark.parametrize(
    "args, words",
    [
        ({"n_classes": 1}, "n_classes"),
        ({"channels": 2}, r"channels: 2 is not allowed; valid: 1, 3"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"seed": "x"}, "seed"),
        ({"colors": {"red": 1}}, "bad colour 'red'"),
        ({"colors": {"#ff0000": 3}}, "class of '#ff0000' must be an integer 0..2"),
        ({"colors": {"#ff0000": 1, (255, 0, 0): 2}}, "#ff0000 is given twice"),
        ({"size": [8, 8], "transforms": {"resize": [4, 4]}}, "disagree"),
        ({"transforms": {"flip": 1}}, "unknown key 'flip'.*valid: clahe, hflip, resize, vflip"),
    ],
)
def test_bad_image_folder_arguments_are_config_errors(tmp_path, args, words):
    write_pair(tmp_path, "a", index_mask(0))
    write_pair(tmp_path, "b", index_mask(1))
    with pytest.raises(pk.ConfigError, match=words):
        folder(root=tmp_path, **{"n_classes": 3, **args})
