"""Bootstrap intervals and summary statistics against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fdseg_core.experiment import mean_std, paired_bootstrap_ci
from fdseg_core.experiment.stats import (
    FEW_SEEDS,
    few_seeds_note,
    hierarchical_paired_bootstrap_ci,
    per_unit_means,
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
            "not established: interval includes 0 (2 of 3 seeds gain)",
        ),
    ],
)
def test_verdicts_follow_the_numbers(per_seed, low, high, expected):
    assert verdict(per_seed, low, high) == expected


def test_few_seeds_get_one_line_of_warning():
    assert few_seeds_note(FEW_SEEDS) is None
    assert "3 seeds: seed-level intervals will be wide" in few_seeds_note(3)
    assert "no seed-level interval" in few_seeds_note(1)
