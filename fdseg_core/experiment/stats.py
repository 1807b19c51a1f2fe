"""Statistics of the experiment: means, standard deviations, paired bootstrap intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["mean_std", "paired_bootstrap_ci"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """NaN-aware mean and sample standard deviation (``ddof=1``; 0 for one value)."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return float("nan"), float("nan")
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std


def paired_bootstrap_ci(
    method: Sequence[float],
    baseline: Sequence[float],
    *,
    n_resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean paired difference ``method - baseline`` and its percentile bootstrap interval.

    Pairs are resampled with replacement (the pairing, e.g. the same test case and
    seed, is kept), and the interval is read from the percentiles of the resampled
    mean differences.

    Args:
        method: Scores of the method, one per pair.
        baseline: Scores of the baseline on the same pairs, in the same order.
        n_resamples: Bootstrap resamples.
        confidence: Coverage of the interval, in ``(0, 1)``.
        seed: Seed of the resampling.

    Returns:
        ``(mean_difference, low, high)``; NaNs when there is no complete pair.

    Raises:
        ValueError: Lengths differ, or bad ``confidence``/``n_resamples``.
    """
    a = np.asarray(method, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"method has {a.size} scores but baseline has {b.size}; pairs must match")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    diff = a - b
    diff = diff[~np.isnan(diff)]
    if diff.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(n_resamples, diff.size))
    means = diff[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(diff.mean()), float(low), float(high)
