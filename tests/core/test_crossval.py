"""Cross-validation's post-processing decision on pooled predictions whose answer is known,
and reading the decision back (the whole run: tests/cli/test_crossval.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fdseg_core.crossval import POSTPROCESSING, decide_postprocessing, load_postprocessing

LABELS = {"background": 0, "red_nucleus": 1, "dentate_nucleus": 2}


def _case():
    """A reference with one class-1 blob and a class-2 blob in each hemisphere, and a
    prediction with a spurious class-1 speck and a spurious class-2 speck on the left."""
    ref = np.zeros((20, 12, 8), dtype=np.int16)
    ref[8:12, 2:6, 2:6] = 1  # one component, centred
    ref[2:6, 7:11, 2:6] = 2  # left (world x below the centre)
    ref[14:18, 7:11, 2:6] = 2  # right
    pred = ref.copy()
    pred[1, 1, 7] = 1  # a speck far from the class-1 blob
    pred[0:2, 0:2, 0] = 2  # a speck on the left, not touching the left blob
    return ref, pred


def test_each_class_gets_the_mode_that_raises_its_pooled_dice():
    ref, pred = _case()
    pairs = [("c0", pred, ref, np.eye(4)), ("c1", ref.copy(), ref, np.eye(4))]
    modes, dice = decide_postprocessing(pairs, LABELS)
    # class 1: keeping the largest component removes the speck; per hemisphere gives the
    # same here (blob and speck fall on one side), and of equal modes the simpler wins
    assert modes[1] == "class"
    assert dice["red_nucleus"]["class"] == dice["red_nucleus"]["hemisphere"] == 1.0
    # class 2: "class" deletes one of the two true nuclei; per hemisphere the left speck
    # goes and both nuclei stay: a perfect score
    assert modes[2] == "hemisphere"
    assert dice["dentate_nucleus"]["hemisphere"] == pytest.approx(1.0)
    assert dice["dentate_nucleus"]["class"] < dice["dentate_nucleus"]["none"] < 1.0
    # the closed form of "none" for class 2 on case 0: 2 * 128 / (128 + 132), and 1 on c1
    assert dice["dentate_nucleus"]["none"] == pytest.approx((2 * 128 / 260 + 1.0) / 2)


def test_ties_keep_the_prediction_as_it_is():
    ref, _ = _case()
    modes, dice = decide_postprocessing([("c", ref.copy(), ref, np.eye(4))], LABELS)
    assert dice["red_nucleus"] == {"none": 1.0, "class": 1.0, "hemisphere": 1.0}
    assert modes == {1: "none", 2: "none"}


def test_a_gain_below_the_minimum_keeps_the_prediction_as_it_is():
    """One spurious voxel among many cases: keeping the largest component gains a few
    hundred-thousandths of Dice, below the minimum: no post-processing."""
    from fdseg_core.crossval import MIN_POSTPROCESSING_GAIN

    ref, pred = _case()
    pairs = [("c0", pred, ref, np.eye(4))] + [
        (f"c{i}", ref.copy(), ref, np.eye(4)) for i in range(1, 400)
    ]
    modes, dice = decide_postprocessing(pairs, LABELS)
    gain = dice["red_nucleus"]["class"] - dice["red_nucleus"]["none"]
    assert 0 < gain < MIN_POSTPROCESSING_GAIN
    assert modes[1] == "none"
    # a gain above it still decides
    modes, _ = decide_postprocessing(pairs, LABELS, min_gain=gain / 2)
    assert modes[1] == "class"


def test_the_decision_reads_back_per_class_value(tmp_path):
    (tmp_path / POSTPROCESSING).write_text(
        json.dumps({"keep_largest": {"1": "class", "2": "hemisphere"}})
    )
    assert load_postprocessing(tmp_path) == {1: "class", 2: "hemisphere"}


def test_a_run_without_a_decision_names_the_missing_file(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"postprocessing\.json does not exist: a cross-validation"
    ):
        load_postprocessing(tmp_path)
