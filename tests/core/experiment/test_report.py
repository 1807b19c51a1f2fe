"""The Dice-against-training-size plot of an experiment's report."""

import pytest

from fdseg_core.experiment.report import dice_vs_size_figure

METHODS = ("none", "early", "late")


def _table(sizes, dice=0.9):
    return [
        {"train_size": n, "class": cls, "method": m, "dice_mean": dice, "dice_std": 0.05}
        for n in sizes
        for cls in ("red_nucleus", "mean")
        for m in METHODS
    ]


@pytest.mark.parametrize("sizes", [(2,), (2, 4, 8)])
def test_every_method_is_plotted_inside_the_size_axis_with_a_margin(sizes):
    fig = dice_vs_size_figure(_table(sizes), METHODS)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["red nucleus", "mean"]
    for ax in axes:
        lo, hi = ax.get_xlim()
        # half an octave either side: a single size does not fill the axis with jitter
        assert lo == pytest.approx(min(sizes) / 2**0.5) and hi == pytest.approx(max(sizes) * 2**0.5)
        lines = [line for line in ax.get_lines() if line.get_marker() == "o"]  # not the caps
        assert len(lines) == len(METHODS)
        xs = sorted(x for line in lines for x in line.get_xdata())
        # each method sits within 10 % of its size, and the methods do not coincide
        for n in sizes:
            near = [x for x in xs if abs(x / n - 1) < 0.1]
            assert len(near) == len(METHODS) and len(set(near)) == len(METHODS)
        assert [text.get_text() for text in ax.get_legend().get_texts()] == [
            "baseline",
            "early",
            "late",
        ]


def test_a_dice_of_one_is_not_clipped():
    fig = dice_vs_size_figure(_table((4,), dice=1.0), METHODS)
    for ax in fig.get_axes():
        assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] > 1.0
