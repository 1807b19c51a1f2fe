"""An experiment's report: seed-level statistics, its files and its plot."""

import json
from dataclasses import replace

import pytest

from fdseg_core.experiment.report import (
    ALL_SIZES,
    SummaryRow,
    dice_vs_size_figure,
    summarise,
    write_report,
)
from fdseg_core.experiment.results import CaseDice, RunScores

METHODS = ("none", "early", "late")


def _table(sizes, dice=0.9):
    return [
        SummaryRow(train_size=n, class_name=cls, method=m, n=4, dice_mean=dice, dice_std=0.05)
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


def _results(deltas_by_size, n_cases=4):
    """Results whose method ``late`` beats ``none`` by the given per-seed deltas."""
    results = []
    for size, deltas in deltas_by_size.items():
        for seed, delta in enumerate(deltas):
            for method, shift in (("none", 0.0), ("late", delta)):
                cases = tuple(
                    CaseDice(f"c{i}", {"red": 0.7 + 0.01 * i + shift}) for i in range(n_cases)
                )
                results.append(RunScores(size, method, seed, cases))
    return results


def test_summary_rows_carry_seed_level_and_pooled_intervals_per_seed_deltas_and_a_verdict():
    results = _results({2: [-0.02, 0.03, 0.08], 8: [0.02, 0.03, 0.04]})
    table = summarise(results, methods=["none", "late"], n_resamples=2000)
    # the flat rows of table.csv and summary.json
    rows = {(r.train_size, r.class_name, r.method): r.to_dict() for r in table}
    typed = next(r for r in table if (r.train_size, r.class_name, r.method) == (2, "red", "late"))
    assert typed.delta is not None and typed.delta.interval("pi") == pytest.approx(
        (rows[(2, "red", "late")]["pi_low"], rows[(2, "red", "late")]["pi_high"])
    )
    small = rows[(2, "red", "late")]
    assert small["per_seed"] == pytest.approx([-0.02, 0.03, 0.08])
    assert small["n_seeds"] == 3 and small["diff"] == pytest.approx(0.03)
    # constant within a seed: the pooled interval is the spread of 3 values over 12
    # pairs, the seed-level one the spread of 3 seeds
    assert small["ci_low"] < 0 < small["ci_high"]
    assert small["pooled_ci_low"] > small["ci_low"] and small["pooled_ci_high"] < small["ci_high"]
    # 3 seeds: the headline is the t interval on the seed means, 0.03 ± t(2) 0.05 / sqrt(3)
    half = 4.302653 * 0.05 / 3**0.5
    assert small["ci_method"] == "t"
    assert (small["ci_low"], small["ci_high"]) == pytest.approx((0.03 - half, 0.03 + half))
    assert small["verdict"] == (
        "not detected: gains up to +15.4 and losses down to -9.4 points remain possible "
        "(2 of 3 seeds gain)"
    )
    # one more seed: 0.03 ± t(2) 0.05 sqrt(1 + 1/3)
    pi = 4.302653 * 0.05 * (4 / 3) ** 0.5
    assert (small["pi_low"], small["pi_high"]) == pytest.approx((0.03 - pi, 0.03 + pi))
    assert small["sd_seeds"] == pytest.approx(0.05)
    large = rows[(8, "red", "late")]
    assert large["verdict"] == "gain in every seed, interval above 0"
    # pooled over sizes, the unit stays the seed: each seed's mean over the two sizes
    pooled = rows[(ALL_SIZES, "red", "late")]
    assert pooled["n_seeds"] == 3 and pooled["diff"] == pytest.approx(0.03)
    assert pooled["per_seed"] == pytest.approx([0.0, 0.03, 0.06])
    assert rows[(2, "red", "none")]["verdict"] is None


def test_a_second_summary_of_the_same_results_has_the_same_rows_and_leaves_them_as_they_were():
    results = _results({2: [-0.02, 0.03, 0.08], 8: [0.02, 0.03, 0.04]})
    before = list(results)
    first = summarise(results, methods=["none", "late"], n_resamples=200)
    assert results == before  # no per-case mean added
    second = summarise(results, methods=["none", "late"], n_resamples=200)
    assert second == first
    assert sum(r.class_name == "mean" and r.method == "late" for r in second) == 3  # 2, 8, all


def test_the_report_writes_strict_json_and_the_few_seeds_note(tmp_path):
    results = _results({2: [0.01, 0.02, 0.03]})
    report = write_report(results, tmp_path, methods=["none", "late"], n_resamples=200)
    summary = json.loads((tmp_path / "summary.json").read_text(), parse_constant=_refuse)
    assert summary["n_seeds"] == 3 and "3 seeds" in summary["note"]
    assert "Note: 3 seeds: seed-level intervals will be wide" in report.markdown
    assert report.markdown == (tmp_path / "table.md").read_text() and report.plot.is_file()
    assert "seed-level 95% CI" in (tmp_path / "table.md").read_text()
    header = (tmp_path / "table.csv").read_text().splitlines()[0].split(",")
    assert {"ci_low", "pooled_ci_low", "per_seed", "verdict"} <= set(header)


def _refuse(name):
    raise AssertionError(f"non-standard JSON constant {name}")


def test_the_plot_shows_each_methods_seed_level_interval_and_its_seeds():
    results = _results({2: [-0.02, 0.03, 0.08], 8: [0.02, 0.03, 0.04]})
    table = summarise(results, methods=["none", "late"], n_resamples=2000)
    fig = dice_vs_size_figure(table, ["none", "late"])
    axes = fig.get_axes()
    assert len(axes) == 4  # (Dice, Δ) x (red, mean); the pooled rows are not drawn
    delta_ax = axes[2]
    assert "seed-level 95% CI" in delta_ax.get_title()
    row = next(r for r in table if (r.train_size, r.class_name, r.method) == (2, "red", "late"))
    low, high = row.delta.interval("ci")
    # the error bar spans the seed-level interval (in points)
    bars = [c for c in delta_ax.collections if len(c.get_segments())]
    spans = [seg[:, 1] for c in bars for seg in c.get_segments()]
    assert any(
        lo == pytest.approx(100 * low) and hi == pytest.approx(100 * high)
        for lo, hi in (sorted(s) for s in spans)
    )
    seed_dots = [line for line in delta_ax.get_lines() if line.get_marker() == "."]
    assert sorted(y for line in seed_dots for y in line.get_ydata())[:3] == pytest.approx(
        [-2.0, 2.0, 3.0]
    )


def test_another_baseline_is_compared_with_when_named(tmp_path):
    """An ablation of recipes: every arm against the reference recipe, not against none."""
    results = [
        replace(r, method={"none": "default", "late": "paper"}[r.method])
        for r in _results({2: [0.02, 0.03, 0.04]})
    ]
    report = write_report(results, tmp_path, methods=("default", "paper"), baseline="default")
    rows = {r.method: r for r in report.table if r.class_name == "red"}
    assert rows["default"].delta is None
    assert rows["paper"].delta.diff == pytest.approx(0.03)
    assert rows["paper"].delta.seed_level.per_seed == pytest.approx([0.02, 0.03, 0.04])
    assert "baseline (method default)" in (tmp_path / "table.md").read_text()
    # the default baseline finds no "none" here: no differences at all
    plain = summarise(results, methods=("default", "paper"), n_resamples=100)
    assert all(r.delta is None for r in plain)


def test_the_compact_table_has_a_row_per_size_and_method_with_its_runs_and_delta():
    from fdseg_core.experiment.report import compact_table

    results = _results({2: [0.02, 0.03, 0.04], 8: [0.01, 0.01, 0.01]})
    table = summarise(results, methods=("none", "late"), n_resamples=200)
    lines = compact_table(table, results, ("none", "late")).splitlines()
    body = [line.split(" | ") for line in lines[2:]]
    assert [(cells[0].strip("| "), cells[1], cells[2]) for cells in body] == [
        ("2", "none", "3"),
        ("2", "late", "3"),
        ("8", "none", "3"),
        ("8", "late", "3"),
        (ALL_SIZES, "none", "6"),
        (ALL_SIZES, "late", "6"),
    ]
    late2 = body[1]
    assert late2[3] == "74.5"  # 0.7 + 0.015 (the cases) + 0.03 (the seeds), in points
    assert late2[4].startswith("+3.0 [")
    assert "gain in every seed" in late2[5]
    assert late2[6] == "±3.3"  # 3 seeds of sd 1 point detect 3.26 points with 80 % power
    assert late2[7] == "[-2.0, +8.0]"  # one more seed: 3.0 ± t(2) sqrt(4/3) points
    assert late2[8] == "+2.0, +3.0, +4.0"
