"""Statistics of the experiment: means, standard deviations, paired bootstrap intervals."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "FEW_SEEDS",
    "N_RESAMPLES",
    "few_seeds_note",
    "hierarchical_paired_bootstrap_ci",
    "mean_std",
    "paired_bootstrap_ci",
    "per_unit_means",
    "verdict",
]

#: Bootstrap resamples of every interval, unless a caller asks for another number.
N_RESAMPLES = 10000


def _check_resampling(n_resamples: int, confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")


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
    n_resamples: int = N_RESAMPLES,
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
    _check_resampling(n_resamples, confidence)
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


def hierarchical_paired_bootstrap_ci(
    diffs_by_unit: Mapping[Any, Sequence[float]],
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean paired difference over seeds and its two-level percentile bootstrap interval.

    The variation that decides whether a user gains is between seeds (which training
    cases were drawn, and the initialisation), so each resample first draws the seeds
    with replacement, then the test cases within each drawn seed with replacement
    (a two-stage bootstrap of a nested design; Davison & Hinkley 1997, section 3.8).
    The statistic is the mean over the drawn seeds of each seed's mean paired
    difference, so every seed weighs the same whatever its number of test cases.

    Args:
        diffs_by_unit: ``{seed: [method - baseline for each test case]}``. The top-level
            unit may be anything hashable: pooled over training sizes, it is the
            ``(size, seed)`` pair. NaN differences are dropped; a unit left with none is
            dropped.
        n_resamples: Bootstrap resamples.
        confidence: Coverage of the interval, in ``(0, 1)``.
        seed: Seed of the resampling.

    Returns:
        ``(mean_difference, low, high)``; the mean is over units of their mean
        difference. NaNs when no unit has a difference; with a single unit, the mean
        and NaN bounds (one seed says nothing about the spread between seeds).

    Raises:
        ValueError: Bad ``confidence``/``n_resamples``.
    """
    _check_resampling(n_resamples, confidence)
    units = [np.asarray(v, dtype=np.float64) for v in diffs_by_unit.values()]
    units = [u[~np.isnan(u)] for u in units]
    units = [u for u in units if u.size]
    nan = float("nan")
    if not units:
        return nan, nan, nan
    point = float(np.mean([u.mean() for u in units]))
    if len(units) == 1:
        return point, nan, nan
    counts = np.array([u.size for u in units])
    padded = np.zeros((len(units), counts.max()))
    for i, u in enumerate(units):
        padded[i, : u.size] = u
    rng = np.random.default_rng(seed)
    n_units, width = len(units), counts.max()
    picked = rng.integers(0, n_units, size=(n_resamples, n_units))
    # cases within each drawn unit: uniform on that unit's own count
    cases = (rng.random((n_resamples, n_units, width)) * counts[picked][..., None]).astype(int)
    valid = np.arange(width) < counts[picked][..., None]
    values = padded[picked[..., None], cases]
    unit_means = (values * valid).sum(axis=2) / valid.sum(axis=2)
    means = unit_means.mean(axis=1)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return point, float(low), float(high)


def per_unit_means(diffs_by_unit: Mapping[Any, Sequence[float]]) -> dict[Any, float]:
    """``{unit: mean paired difference}`` (NaNs dropped; units without one left out)."""
    out = {}
    for unit, values in diffs_by_unit.items():
        arr = np.asarray(values, dtype=np.float64)
        arr = arr[~np.isnan(arr)]
        if arr.size:
            out[unit] = float(arr.mean())
    return out


#: Below this many seeds the seed-level interval is wide (and a percentile bootstrap
#: over so few seeds tends to be too narrow); the report and the command say so.
FEW_SEEDS = 5


def few_seeds_note(n_seeds: int) -> str | None:
    """The one line that warns about few seeds, or ``None`` from :data:`FEW_SEEDS` on."""
    if n_seeds >= FEW_SEEDS:
        return None
    if n_seeds == 1:
        return (
            "1 seed: no seed-level interval can be formed, so no gain or loss is established; "
            "run at least 3 seeds, and 5 or more for intervals that are not wide"
        )
    return (
        f"{n_seeds} seeds: seed-level intervals will be wide (and a bootstrap over so few seeds "
        f"tends to be too narrow); {FEW_SEEDS} or more seeds make a claim firmer"
    )


def verdict(per_unit: Sequence[float], low: float, high: float, *, unit: str = "seed") -> str:
    """A verdict in words that follows from the seed-level numbers.

    Args:
        per_unit: The mean paired difference of each seed (or (size, seed) pair).
        low: Lower bound of the seed-level (hierarchical) interval.
        high: Upper bound of the seed-level interval.
        unit: What one value of ``per_unit`` is, for the text.

    Returns:
        ``"gain in every seed, interval above 0"``, ``"gain on average, interval above 0
        (2 of 3 seeds gain)"``, the same two for a loss, ``"not established: interval
        includes 0 (2 of 3 seeds gain)"``, or ``"not established: one seed"`` when no
        interval could be formed.
    """
    values = [v for v in per_unit if not math.isnan(v)]
    n = len(values)
    plural = f"{unit}s" if n != 1 else unit
    if n < 2 or math.isnan(low) or math.isnan(high):
        return f"not established: {n} {plural}, no {unit}-level interval"
    gains = sum(v > 0 for v in values)
    losses = sum(v < 0 for v in values)
    if low > 0:
        if gains == n:
            return f"gain in every {unit}, interval above 0"
        return f"gain on average, interval above 0 ({gains} of {n} {plural} gain)"
    if high < 0:
        if losses == n:
            return f"loss in every {unit}, interval below 0"
        return f"loss on average, interval below 0 ({losses} of {n} {plural} lose)"
    return f"not established: interval includes 0 ({gains} of {n} {plural} gain)"
