"""Bootstrap intervals and summary statistics against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fdseg_core.experiment import mean_std, paired_bootstrap_ci
from fdseg_core.experiment.stats import (
    BOOTSTRAP_FROM_SEEDS,
    FEW_SEEDS,
    detectable_effect,
    few_seeds_note,
    hierarchical_paired_bootstrap_ci,
    per_unit_means,
    prediction_interval,
    seed_level,
    seeds_needed,
    t_interval,
    t_test_power,
    verdict,
)


def test_constant_paired_difference_has_a_degenerate_interval():
    base = [0.5, 0.6, 0.7, 0.4]
    method = [b + 0.1 for b in base]
    diff, low, high = paired_bootstrap_ci(method, base, n_resamples=500)
    assert diff == pytest.approx(0.1)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)


def test_interval_contains_the_mean_and_shrinks_with_more_pairs():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.4, 0.8, 400)
    method = base + 0.05 + rng.normal(0, 0.05, 400)
    diff, low, high = paired_bootstrap_ci(method, base, n_resamples=2000)
    assert low < diff < high
    # normal approximation: half-width ~ 1.96 * sd / sqrt(n)
    expected = 1.96 * np.std(method - base, ddof=1) / math.sqrt(400)
    assert (high - low) / 2 == pytest.approx(expected, rel=0.15)
    _, low_small, high_small = paired_bootstrap_ci(method[:20], base[:20], n_resamples=2000)
    assert high_small - low_small > high - low


def test_pairing_is_kept():
    """Large case-to-case spread but a constant paired gain: the interval excludes zero."""
    base = [0.1, 0.9, 0.2, 0.8, 0.5, 0.3]
    method = [b + 0.02 for b in base]
    _, low, _ = paired_bootstrap_ci(method, base, n_resamples=1000)
    assert low > 0


def test_nan_pairs_are_dropped():
    diff, low, high = paired_bootstrap_ci([0.5, float("nan")], [0.4, 0.4], n_resamples=100)
    assert diff == pytest.approx(0.1) and low == pytest.approx(0.1)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="method has 2 scores but baseline has 3"):
        paired_bootstrap_ci([0.1, 0.2], [0.1, 0.2, 0.3])


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5])
def test_bad_confidence_raises(confidence):
    with pytest.raises(ValueError, match="confidence must lie in"):
        paired_bootstrap_ci([0.1], [0.2], confidence=confidence)


def test_mean_std_matches_numpy_and_ignores_nan():
    vals = [0.2, 0.4, float("nan"), 0.9]
    mean, std = mean_std(vals)
    assert mean == pytest.approx(0.5)
    assert std == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))
    assert mean_std([0.3]) == (0.3, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))


# --- seed-level (hierarchical) intervals ---------------------------------------------


def test_identical_seeds_with_a_constant_gain_collapse_onto_the_mean():
    by_seed = {seed: [0.03] * 8 for seed in range(4)}
    diff, low, high = hierarchical_paired_bootstrap_ci(by_seed, n_resamples=500)
    assert diff == pytest.approx(0.03)
    assert low == pytest.approx(0.03) and high == pytest.approx(0.03)


def test_identical_seeds_leave_only_the_case_spread():
    """Seeds that repeat the same case differences add no seed-level spread: the
    interval is then the one of resampling cases (within a seed) alone."""
    rng = np.random.default_rng(3)
    cases = rng.normal(0.02, 0.05, 16)
    by_seed = {seed: cases for seed in range(6)}
    diff, low, high = hierarchical_paired_bootstrap_ci(by_seed, n_resamples=4000)
    assert diff == pytest.approx(cases.mean())
    # the mean of 6 independent resamples of 16 cases: sd / sqrt(16 * 6)
    expected = 1.96 * cases.std(ddof=0) / math.sqrt(16 * 6)
    assert (high - low) / 2 == pytest.approx(expected, rel=0.15)


def test_seed_variance_that_dominates_widens_the_seed_level_interval():
    """Seed effects of ±5 points and tight cases within a seed: the pooled interval
    treats 3 x 8 pairs as independent and is far narrower than the hierarchical one."""
    rng = np.random.default_rng(0)
    effects = [-0.02, 0.03, 0.08]
    by_seed = {s: e + rng.normal(0, 0.005, 8) for s, e in enumerate(effects)}
    _, low, high = hierarchical_paired_bootstrap_ci(by_seed, n_resamples=4000)
    flat = np.concatenate(list(by_seed.values()))
    _, plow, phigh = paired_bootstrap_ci(flat, np.zeros_like(flat), n_resamples=4000)
    assert high - low > 3 * (phigh - plow)
    assert low < 0 < high  # the seeds disagree in sign: nothing is established
    assert plow > 0  # while the pooled interval would call it a gain


def test_one_seed_has_no_seed_level_interval():
    diff, low, high = hierarchical_paired_bootstrap_ci({0: [0.1, 0.2, 0.3]}, n_resamples=100)
    assert diff == pytest.approx(0.2)
    assert math.isnan(low) and math.isnan(high)
    assert verdict([0.2], low, high) == "not established: 1 seed, no seed-level interval"


def test_every_seed_weighs_the_same_whatever_its_case_count():
    diff, _, _ = hierarchical_paired_bootstrap_ci({0: [0.0] * 9, 1: [0.3]}, n_resamples=100)
    assert diff == pytest.approx(0.15)
    assert per_unit_means({0: [0.0, float("nan")], 1: [0.3], 2: [float("nan")]}) == {
        0: 0.0,
        1: 0.3,
    }


def test_resampled_seeds_keep_their_own_cases():
    """Two seeds with disjoint case values: every resampled mean is a mean of draws
    from the seeds, so the interval stays inside the range of the case values."""
    by_seed = {0: [0.0, 0.0], 1: [1.0, 1.0, 1.0]}
    _, low, high = hierarchical_paired_bootstrap_ci(by_seed, n_resamples=2000)
    assert low == pytest.approx(0.0) and high == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("per_seed", "low", "high", "expected"),
    [
        ([0.01, 0.02, 0.03], 0.005, 0.03, "gain in every seed, interval above 0"),
        ([-0.01, 0.05, 0.06], 0.001, 0.05, "gain on average, interval above 0 (2 of 3 seeds gain)"),
        ([-0.01, -0.02, -0.03], -0.03, -0.005, "loss in every seed, interval below 0"),
        (
            [0.01, -0.05, -0.06],
            -0.05,
            -0.001,
            "loss on average, interval below 0 (2 of 3 seeds lose)",
        ),
        (
            [-0.01, 0.03, 0.07],
            -0.01,
            0.07,
            "not detected: gains up to +7.0 and losses down to -1.0 points remain possible "
            "(2 of 3 seeds gain)",
        ),
    ],
)
def test_verdicts_follow_the_numbers(per_seed, low, high, expected):
    assert verdict(per_seed, low, high) == expected


def test_few_seeds_get_one_line_of_warning():
    assert few_seeds_note(FEW_SEEDS) is None
    assert "3 seeds: seed-level intervals will be wide" in few_seeds_note(3)
    assert "no seed-level interval" in few_seeds_note(1)


# --- t intervals, prediction intervals, power, detectable effects, seeds needed ----------


def test_the_t_interval_on_seed_means_is_the_closed_form():
    values = [0.01, -0.02, 0.04, 0.03, 0.00]
    mean, low, high = t_interval(values)
    half = 2.776445 * np.std(values, ddof=1) / math.sqrt(5)  # t(0.975, 4)
    assert mean == pytest.approx(0.012)
    assert (low, high) == pytest.approx((0.012 - half, 0.012 + half))
    assert all(math.isnan(v) for v in t_interval([0.1])[1:])


def test_the_prediction_interval_of_one_more_seed_is_wider_by_sqrt_n_plus_one():
    values = [0.01, -0.02, 0.04, 0.03, 0.00]
    low, high = prediction_interval(values)
    _, tlow, thigh = t_interval(values)
    assert (high - low) / (thigh - tlow) == pytest.approx(math.sqrt(5 + 1))


def test_a_t_interval_covers_at_its_nominal_rate_where_a_bootstrap_over_few_seeds_does_not():
    """8 normal seed means, true mean 0: the t interval misses about 5 % of the time;
    the percentile bootstrap of the seeds misses more (the audit's 4 % false gains at
    a nominal 2.5 % on one side)."""
    rng = np.random.default_rng(11)
    t_miss = boot_miss = 0
    trials = 2000
    for i in range(trials):
        seeds = rng.normal(0.0, 1.0, 8)
        _, low, high = t_interval(seeds)
        t_miss += not low < 0 < high
        _, blow, bhigh = hierarchical_paired_bootstrap_ci(
            {k: [v] for k, v in enumerate(seeds)}, n_resamples=400, seed=i
        )
        boot_miss += not blow < 0 < bhigh
    assert abs(t_miss / trials - 0.05) < 0.015
    assert boot_miss / trials > 0.07


def test_power_matches_r_power_t_test():
    # power.t.test(n = 10, delta = 1, sd = 1, type = "one.sample") -> 0.8030969
    assert t_test_power(1.0, 1.0, 10) == pytest.approx(0.8030969, abs=1e-6)
    # and a simulation of the test itself at another point
    rng = np.random.default_rng(4)
    draws = rng.normal(0.5, 1.0, (200000, 5))
    t = draws.mean(axis=1) / (draws.std(axis=1, ddof=1) / math.sqrt(5))
    assert np.mean(np.abs(t) > 2.776445) == pytest.approx(t_test_power(0.5, 1.0, 5), abs=0.004)
    assert t_test_power(-1.0, 1.0, 10) == pytest.approx(t_test_power(1.0, 1.0, 10))


def test_the_detectable_effect_is_detected_at_the_stated_power_in_simulation():
    sd, n = 2.5, 8
    effect = detectable_effect(sd, n)
    assert t_test_power(effect, sd, n) == pytest.approx(0.8, abs=1e-6)
    # halfway between the z approximation (2.80 sd / sqrt n) and a little above it
    assert 2.80 * sd / math.sqrt(n) < effect < 3.3 * sd / math.sqrt(n)
    rng = np.random.default_rng(5)
    detected = 0
    for _ in range(3000):
        _, low, high = t_interval(rng.normal(effect, sd, n))
        detected += low > 0 or high < 0
    assert abs(detected / 3000 - 0.8) < 0.03
    assert math.isnan(detectable_effect(sd, 1)) and detectable_effect(0.0, 5) == 0.0


def test_seeds_needed_is_the_first_count_that_reaches_the_power():
    # power.t.test(delta = 1, sd = 1, power = 0.8, type = "one.sample") -> n = 9.94, so 10
    assert seeds_needed(1.0, 1.0) == 10
    n = seeds_needed(2.5, 2.0)
    assert t_test_power(2.0, 2.5, n) >= 0.8 > t_test_power(2.0, 2.5, n - 1)
    assert seeds_needed(0.0, 1.0) == 2
    assert seeds_needed(1.0, 0.001, max_seeds=1000) is None
    with pytest.raises(ValueError, match="target effect must be positive"):
        seeds_needed(1.0, 0.0)


def test_seed_level_takes_the_t_interval_below_ten_seeds_and_the_bootstrap_from_ten():
    rng = np.random.default_rng(2)
    few = {s: rng.normal(0.01, 0.02, 6) for s in range(5)}
    stats = seed_level(few, n_resamples=500)
    assert stats.method == "t" and (stats.low, stats.high) == (stats.t_low, stats.t_high)
    assert stats.n_seeds == 5 and stats.pi_low < stats.low and stats.pi_high > stats.high
    many = {s: rng.normal(0.01, 0.02, 6) for s in range(BOOTSTRAP_FROM_SEEDS)}
    stats = seed_level(many, n_resamples=500)
    assert stats.method == "bootstrap" and (stats.low, stats.high) == (
        stats.boot_low,
        stats.boot_high,
    )


@pytest.mark.parametrize(
    ("low", "high", "margin", "expected"),
    [
        (-0.004, 0.006, 0.01, "no effect beyond ±1.0 points: the interval lies within it"),
        (-0.004, 0.016, 0.01, "not detected: gains up to +1.6 and losses down to -0.4 points"),
        (-0.004, 0.006, None, "not detected: gains up to +0.6 and losses down to -0.4 points"),
        (-0.0002, -0.0001, 0.01, "below the report's resolution: |Δ| < 0.05 points"),
    ],
)
def test_not_detected_is_told_apart_from_no_effect_and_from_below_resolution(
    low, high, margin, expected
):
    assert verdict([-0.001, 0.001, 0.002], low, high, margin=margin).startswith(expected)
