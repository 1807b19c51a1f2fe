"""The training losses against closed forms and MONAI's implementation of the same loss."""

from __future__ import annotations

import pytest
import torch

from fdseg_core.train.losses import DiceCELoss, SigmoidDiceLoss, build_loss, soft_dice_per_class


def _case(seed=0, shape=(2, 3, 6, 5, 4)):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=gen, dtype=torch.float64)
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=gen)
    return logits, target


def test_soft_dice_is_one_for_a_perfect_prediction_and_near_zero_for_a_disjoint_one():
    target = torch.tensor([[[0, 1], [2, 2]]])  # (N=1, 2, 2), every class present
    perfect = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).double()
    torch.testing.assert_close(
        soft_dice_per_class(perfect, target), torch.ones(3, dtype=perfect.dtype)
    )
    wrong = perfect.roll(1, dims=1)  # every voxel on another class
    assert soft_dice_per_class(wrong, target).max() < 1e-5


def test_dice_ce_is_the_closed_form_of_cross_entropy_plus_foreground_dice():
    logits, target = _case()
    probs = logits.softmax(1)
    onehot = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).double()
    ce = -(onehot * logits.log_softmax(1)).sum(1).mean()
    dims = (0, 2, 3, 4)
    dice = (2 * (probs * onehot).sum(dims) + 1e-5) / (probs.sum(dims) + onehot.sum(dims) + 1e-5)
    want = ce + 1 - dice[1:].mean()
    got = DiceCELoss()(logits, target)
    torch.testing.assert_close(got, want.float(), rtol=1e-6, atol=1e-6)
    with_bg = DiceCELoss(include_background=True, ce_weight=0.0)(logits, target)
    torch.testing.assert_close(with_bg, (1 - dice.mean()).float(), rtol=1e-6, atol=1e-6)


def test_dice_ce_matches_monai_dice_ce_loss():
    monai = pytest.importorskip("monai.losses")
    logits, target = _case(seed=3)
    theirs = monai.DiceCELoss(
        include_background=False,
        to_onehot_y=True,
        softmax=True,
        batch=True,  # nnU-Net's batch Dice: one Dice per class over the whole batch
        smooth_nr=1e-5,
        smooth_dr=1e-5,
    )(logits.float(), target.unsqueeze(1))
    torch.testing.assert_close(DiceCELoss()(logits, target), theirs, rtol=1e-5, atol=1e-5)


def test_sigmoid_dice_is_the_papers_squared_denominator_dice_of_the_foreground_channels():
    logits, target = _case(seed=1)
    p = torch.sigmoid(logits)
    t = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).double()
    dims = (0, 2, 3, 4)
    dice = 2 * (p * t).sum(dims) / ((p * p).sum(dims) + (t * t).sum(dims))
    got = SigmoidDiceLoss()(logits, target)
    torch.testing.assert_close(got, (1 - dice[1:].mean()).float(), rtol=1e-6, atol=1e-6)


def test_sigmoid_dice_matches_monai_dice_loss_with_sigmoid_and_squared_prediction():
    monai = pytest.importorskip("monai.losses")
    logits, target = _case(seed=2)
    onehot = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float()
    theirs = monai.DiceLoss(
        include_background=False,
        sigmoid=True,
        squared_pred=True,
        batch=True,
        smooth_nr=0.0,
        smooth_dr=1e-6,  # fdseg clamps the denominator at eps instead: equal here
    )(logits.float(), onehot)
    torch.testing.assert_close(SigmoidDiceLoss()(logits, target), theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", [DiceCELoss(), SigmoidDiceLoss()], ids=["dice_ce", "sigmoid_dice"])
def test_a_perfect_confident_prediction_scores_lower_than_a_wrong_one(loss):
    target = torch.randint(0, 3, (1, 6, 6, 4), generator=torch.Generator().manual_seed(4))
    target[0, 0, 0, :3] = torch.tensor([0, 1, 2])  # every class present
    onehot = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float()
    good = loss(20 * onehot - 10, target)
    bad = loss(20 * onehot.roll(1, dims=1) - 10, target)
    assert float(good) < 0.01 < 0.9 < float(bad)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        build_loss("focal")
    with pytest.raises(ValueError, match=r"dice_weight=-1"):
        DiceCELoss(dice_weight=-1)
    with pytest.raises(ValueError, match="eps must be positive, got 0"):
        SigmoidDiceLoss(eps=0)
    with pytest.raises(ValueError, match=r"logits \(1, 3, 4, 4\) and target \(1, 4, 5\)"):
        DiceCELoss()(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="need a background and a foreground channel, got 1"):
        SigmoidDiceLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))


def test_dice_focal_refuses_a_negative_gamma_and_weights_by_value():
    from fdseg_core.train.losses import DiceFocalLoss

    with pytest.raises(ValueError, match=r"gamma must be >= 0, got -1"):
        DiceFocalLoss(gamma=-1)
    with pytest.raises(ValueError, match=r"not both 0"):
        DiceFocalLoss(dice_weight=0, focal_weight=0)
