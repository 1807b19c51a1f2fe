"""Bootstrap intervals and summary statistics against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fdseg_core.experiment import mean_std, paired_bootstrap_ci


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
