"""Splits, subsets, augmentation and patch sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from builders import make_toy_dataset

from fdseg_core.data import (
    ALL_FOLD,
    PatchDataset,
    Preprocessor,
    crop_or_pad,
    load_dataset,
    load_splits,
    make_splits,
    plan_folds,
    save_splits,
    select_subset,
)
from fdseg_core.data.augment import AugmentParams, apply_params, sample_params
from fdseg_core.errors import OptionError


def test_splits_are_deterministic_disjoint_and_cover_every_case(tmp_path):
    ids = [f"c{i}" for i in range(11)]
    a = make_splits(ids, n_folds=5, seed=3)
    assert a == make_splits(list(reversed(ids)), n_folds=5, seed=3)
    assert a != make_splits(ids, n_folds=5, seed=4)
    vals = [v for fold in a for v in fold["val"]]
    assert sorted(vals) == sorted(ids)
    for fold in a:
        assert not set(fold["train"]) & set(fold["val"])
        assert len(fold["train"]) + len(fold["val"]) == 11
    save_splits(a, tmp_path / "splits_final.json")
    assert load_splits(tmp_path / "splits_final.json") == a


def test_too_few_cases_for_the_folds_raises():
    with pytest.raises(ValueError, match="cannot make 5 folds from 3 cases"):
        make_splits(["a", "b", "c"], n_folds=5)


def test_subsets_are_nested_and_deterministic():
    ids = [f"c{i}" for i in range(10)]
    s2, s4 = select_subset(ids, 2, seed=1), select_subset(ids, 4, seed=1)
    assert set(s2) <= set(s4) and len(s4) == 4
    assert select_subset(ids, 4, seed=1) == s4
    with pytest.raises(ValueError, match="train_cases 11 exceeds the 10"):
        select_subset(ids, 11)


def test_independent_draws_of_two_sizes_are_not_nested_and_share_cases_only_by_chance():
    ids = [f"c{i:03d}" for i in range(150)]
    nested = [select_subset(ids, n, seed=s) for s in range(20) for n in (5, 50)]
    assert all(set(nested[i]) <= set(nested[i + 1]) for i in range(0, 40, 2))
    draws = {
        (s, n): select_subset(ids, n, seed=s, draw="independent")
        for s in range(200)
        for n in (5, 50)
    }
    assert draws[(3, 5)] == select_subset(ids, 5, seed=3, draw="independent")
    # a case of the 5-case draw is among the 50 with probability 50/150: 5/3 on average
    shared = [len(set(draws[(s, 5)]) & set(draws[(s, 50)])) for s in range(200)]
    assert sum(len(set(draws[(s, 5)]) - set(draws[(s, 50)])) > 0 for s in range(200)) > 150
    assert np.mean(shared) == pytest.approx(5 * 50 / 150, abs=0.25)
    # and the draws of two seeds at one size differ
    assert draws[(0, 5)] != draws[(1, 5)]
    with pytest.raises(ValueError, match="draw must be one of"):
        select_subset(ids, 5, draw="random")


def test_flip_twice_is_identity_and_rot90_moves_image_and_label_together():
    image = torch.arange(2 * 4 * 4 * 3, dtype=torch.float32).reshape(2, 4, 4, 3)
    label = (image[0] % 3).long()
    p = AugmentParams((True, False, True), 1, 1.0, 0.0, 1.0, 0.0, 0)
    img1, lab1 = apply_params(image, label, p)
    assert torch.equal(lab1, (img1[0] % 3).long())  # still aligned
    back = AugmentParams((True, False, True), 0, 1.0, 0.0, 1.0, 0.0, 0)
    img2, lab2 = apply_params(
        *apply_params(torch.rot90(img1, -1, (1, 2)), torch.rot90(lab1, -1, (0, 1)), back)[:2],
        AugmentParams((False,) * 3, 0, 1.0, 0.0, 1.0, 0.0, 0),
    )
    assert torch.equal(img2, image) and torch.equal(lab2, label)


def test_augmentation_is_reproducible_from_the_seed():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert sample_params(g1, square_xy=True) == sample_params(g2, square_xy=True)


def test_crop_or_pad_zero_pads_outside():
    a = np.arange(27).reshape(3, 3, 3)
    out = crop_or_pad(a, (-1, 0, 1), (3, 3, 3))
    assert out.shape == (3, 3, 3)
    assert np.all(out[0] == 0) and out[1, 0, 0] == a[0, 0, 1] and np.all(out[:, :, 2] == 0)


@pytest.fixture
def volumes(tmp_path):
    info = load_dataset(make_toy_dataset(tmp_path / "ds", n_cases=2))
    prep = Preprocessor(("zscore",))
    return [prep(c) for c in info.training]


def test_patches_depend_only_on_seed_epoch_and_index(volumes):
    a = PatchDataset(volumes, patch_size=(16, 16, 8), samples_per_epoch=6, seed=1)
    b = PatchDataset(volumes, patch_size=(16, 16, 8), samples_per_epoch=6, seed=1)
    for i in (0, 5, 3):
        xa, ya = a[i]
        xb, yb = b[i]
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    b.set_epoch(1)
    assert not torch.equal(a[0][0], b[0][0])
    assert a[0][0].shape == (1, 16, 16, 8) and a[0][1].dtype == torch.int64


def test_foreground_oversampling_centres_patches_on_structures(volumes):
    def labels(oversample: float) -> list[torch.Tensor]:
        """The label patches of 40 draws of 8^3 patches (no augmentation)."""
        ds = PatchDataset(
            volumes,
            patch_size=(8, 8, 8),
            samples_per_epoch=40,
            foreground_oversample=oversample,
            augment=False,
        )
        return [ds[i][1] for i in range(40)]

    always, never = labels(1.0), labels(0.0)
    fg_never = np.mean([(y > 0).float().mean().item() for y in never])
    assert np.mean([(y > 0).any().item() for y in always]) == 1.0
    assert np.mean([(y > 0).float().mean().item() for y in always]) > fg_never


def test_patch_larger_than_volume_is_padded(volumes):
    ds = PatchDataset(volumes, patch_size=(32, 32, 20), samples_per_epoch=2, augment=False)
    x, y = ds[0]
    assert x.shape == (1, 32, 32, 20) and y.shape == (32, 32, 20)


def test_worker_processes_load_the_same_patches(volumes):
    ds = PatchDataset(volumes, patch_size=(16, 16, 8), samples_per_epoch=4, seed=2)
    ds.set_epoch(3)
    serial = list(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0))
    parallel = list(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2))
    for (xa, ya), (xb, yb) in zip(serial, parallel, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize(
    ("n_cases", "expected_folds", "noted"),
    [(20, 5, False), (5, 5, False), (4, 4, True), (3, 3, True), (2, 2, True)],
)
def test_folds_adapt_to_small_datasets_when_not_chosen(n_cases, expected_folds, noted):
    plan = plan_folds(n_cases)
    assert plan.n_folds == expected_folds and plan.fold == 0 and not plan.optimistic
    assert (plan.note is not None) == noted
    if noted:
        assert f"{n_cases} training cases" in plan.note and f"{n_cases}-fold" in plan.note


def test_a_single_case_trains_and_validates_on_itself_with_a_warning():
    plan = plan_folds(1)
    assert plan.fold == ALL_FOLD and plan.n_folds is None and plan.optimistic
    assert "optimistic" in plan.note


def test_explicit_folds_that_cannot_be_honoured_name_the_option_and_the_largest_value():
    # the core names the field; the command line renders the same error with its flag
    with pytest.raises(ValueError, match=r"n_folds 5 .* has 4: use n_folds 4 or fewer") as err:
        plan_folds(4, 5)
    assert isinstance(err.value, OptionError) and err.value.options == ("n_folds",)
    assert err.value.render(lambda name: "--folds").startswith("--folds 5 needs")
    with pytest.raises(ValueError, match=r"n_folds 2 .* has 1: leave n_folds out"):
        plan_folds(1, 2)
    assert plan_folds(4, 4).n_folds == 4 and plan_folds(4, 4).note is None


def test_fold_index_is_checked_against_the_folds():
    with pytest.raises(ValueError, match=r"fold 3 does not exist with 3 folds: use fold 0 to 2"):
        plan_folds(3, None, 3)
    with pytest.raises(ValueError, match=r"^fold 1: the dataset has 1 training case"):
        plan_folds(1, None, 1)
    all_fold = plan_folds(7, 3, "all")
    assert all_fold.fold == ALL_FOLD and all_fold.optimistic
