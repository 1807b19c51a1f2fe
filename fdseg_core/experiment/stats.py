"""Statistics of the experiment: means, standard deviations, paired intervals at seed
level (a t interval on the seed means, a two-level bootstrap), a prediction interval for
one more seed, the smallest effect a design detects and the seeds a target effect needs.

The unit that decides whether a user gains is the seed: one draw of training cases and
one initialisation, which is what a user who trains once gets. Every seed-level number
here is computed from the seeds' own mean paired differences (method minus baseline,
averaged over the test cases of that seed)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as sps

from fdseg_core.choices import MAX_SEEDS, N_RESAMPLES
from fdseg_core.errors import InputError

__all__ = [
    "BOOTSTRAP_FROM_SEEDS",
    "FEW_SEEDS",
    "N_RESAMPLES",
    "POWER",
    "RESOLUTION",
    "SeedLevel",
    "detectable_effect",
    "few_seeds_note",
    "hierarchical_paired_bootstrap_ci",
    "mean_std",
    "paired_bootstrap_ci",
    "per_unit_means",
    "prediction_interval",
    "seed_level",
    "seeds_needed",
    "t_interval",
    "t_test_power",
    "verdict",
]


def _check_resampling(n_resamples: int, confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must lie in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise InputError(f"n_resamples must be >= 1, got {n_resamples}")


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
        raise InputError(f"method has {a.size} scores but baseline has {b.size}; pairs must match")
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


#: From this many seeds on, the headline seed-level interval is the two-level bootstrap;
#: below it, the t interval on the seed means (a percentile bootstrap over few seeds is
#: too narrow: with 8 seeds it gave 4 % false gains at a nominal 2.5 % in simulation).
BOOTSTRAP_FROM_SEEDS = 10
#: The power at which :func:`detectable_effect` and :func:`seeds_needed` are stated.
POWER = 0.8
#: Effects smaller than this (in Dice, 0.05 points) are below what the report prints:
#: a verdict on them says so instead of "gain" or "loss".
RESOLUTION = 0.0005


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[~np.isnan(arr)]


def _check_alpha(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must lie in (0, 1), got {confidence}")
    return 1.0 - confidence


def t_interval(values: Sequence[float], *, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` and its Student t interval.

    Applied to the seed means of a paired difference, this is the seed-level interval
    of the mean difference: exact when the seed means are normal, and still close to
    its nominal coverage with few seeds, where a percentile bootstrap is too narrow.

    Args:
        values: One value per independent unit (a seed's mean paired difference).
        confidence: Coverage, in ``(0, 1)``.

    Returns:
        ``(mean, low, high)``; NaN bounds with fewer than 2 values (NaNs dropped).
    """
    alpha = _check_alpha(confidence)
    arr = _clean(values)
    nan = float("nan")
    if arr.size == 0:
        return nan, nan, nan
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, nan, nan
    half = sps.t.ppf(1 - alpha / 2, arr.size - 1) * arr.std(ddof=1) / math.sqrt(arr.size)
    return mean, float(mean - half), float(mean + half)


def prediction_interval(
    values: Sequence[float], *, confidence: float = 0.95
) -> tuple[float, float]:
    """Where one more unit's value falls: ``mean ± t · sd · sqrt(1 + 1/n)``.

    Applied to the seed means of a paired difference, this is what one more training
    run (a new seed) may gain, which is far wider than the interval of the mean gain.

    Returns:
        ``(low, high)``; NaNs with fewer than 2 values.
    """
    alpha = _check_alpha(confidence)
    arr = _clean(values)
    if arr.size < 2:
        return float("nan"), float("nan")
    n = arr.size
    half = sps.t.ppf(1 - alpha / 2, n - 1) * arr.std(ddof=1) * math.sqrt(1 + 1 / n)
    return float(arr.mean() - half), float(arr.mean() + half)


def t_test_power(effect: float, sd: float, n: int, *, alpha: float = 0.05) -> float:
    """Power of the two-sided one-sample t test on ``n`` seed means to detect a true
    mean difference ``effect`` when the seed means spread with standard deviation
    ``sd`` (the noncentral t distribution; R's ``power.t.test(type="one.sample")``).

    Raises:
        ValueError: ``n < 2``, ``sd < 0`` or ``alpha`` outside ``(0, 1)``.
    """
    if n < 2:
        raise InputError(f"the t test needs at least 2 seeds, got {n}")
    if sd < 0 or not 0 < alpha < 1:
        raise InputError(f"need sd >= 0 and alpha in (0, 1), got sd={sd}, alpha={alpha}")
    if sd == 0:
        return 1.0 if effect != 0 else alpha
    df = n - 1
    crit = sps.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) * math.sqrt(n) / sd
    if nc - crit > 40:  # far in the tail, where scipy's noncentral t returns NaN
        return 1.0
    return float(min(1.0, sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc)))


def detectable_effect(sd: float, n: int, *, power: float = POWER, alpha: float = 0.05) -> float:
    """The smallest true mean difference that ``n`` seeds detect with ``power`` (two-sided
    t test at level ``alpha``), given the between-seed standard deviation ``sd``.

    Returns:
        The effect, in the units of ``sd``; NaN with fewer than 2 seeds or a NaN ``sd``.
    """
    if n < 2 or math.isnan(sd):
        return float("nan")
    if sd == 0:
        return 0.0
    if not 0 < power < 1:
        raise InputError(f"power must lie in (0, 1), got {power}")
    upper = sd
    while t_test_power(upper, sd, n, alpha=alpha) < power:
        upper *= 2
    return float(optimize.brentq(lambda d: t_test_power(d, sd, n, alpha=alpha) - power, 0.0, upper))


def seeds_needed(
    sd: float,
    effect: float,
    *,
    power: float = POWER,
    alpha: float = 0.05,
    max_seeds: int = MAX_SEEDS,
) -> int | None:
    """The fewest seeds whose t test detects a true mean difference ``effect`` with
    ``power``, given the between-seed standard deviation ``sd`` (from a pilot).

    Returns:
        The number of seeds (at least 2), or ``None`` when ``max_seeds`` do not suffice.

    Raises:
        ValueError: ``effect`` is not positive or ``sd`` is NaN.
    """
    if not effect > 0:
        raise InputError(f"the target effect must be positive, got {effect}")
    if math.isnan(sd) or sd < 0:
        raise InputError(f"the between-seed standard deviation must be >= 0, got {sd}")
    if t_test_power(effect, sd, 2, alpha=alpha) >= power:
        return 2
    low, high = 2, 4  # power grows with n: bracket the first n that reaches it
    while t_test_power(effect, sd, high, alpha=alpha) < power:
        if high >= max_seeds:
            return None
        low, high = high, min(2 * high, max_seeds)
    while high - low > 1:
        mid = (low + high) // 2
        if t_test_power(effect, sd, mid, alpha=alpha) >= power:
            high = mid
        else:
            low = mid
    return high


@dataclass(frozen=True)
class SeedLevel:
    """Everything the report says about one paired difference at seed level.

    Attributes:
        diff: The mean over seeds of each seed's mean paired difference.
        low: Lower bound of the headline interval (:attr:`method`).
        high: Upper bound of the headline interval.
        method: ``"t"`` (the t interval on the seed means, the headline below
            :data:`BOOTSTRAP_FROM_SEEDS` seeds) or ``"bootstrap"`` (the two-level
            bootstrap, from that many on).
        t_low: The t interval's lower bound. t_high: its upper bound.
        boot_low: The two-level bootstrap's lower bound. boot_high: its upper bound.
        pi_low: The prediction interval of one more seed's difference, lower bound.
        pi_high: Its upper bound.
        sd: The standard deviation of the seed means (``ddof=1``).
        detectable: The smallest true mean difference these seeds detect with 80 %
            power (two-sided, 5 %), from ``sd``.
        per_seed: Each seed's mean paired difference.
    """

    diff: float
    low: float
    high: float
    method: str
    t_low: float
    t_high: float
    boot_low: float
    boot_high: float
    pi_low: float
    pi_high: float
    sd: float
    detectable: float
    per_seed: tuple[float, ...]

    @property
    def n_seeds(self) -> int:
        return len(self.per_seed)


def seed_level(
    diffs_by_unit: Mapping[Any, Sequence[float]],
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> SeedLevel:
    """The seed-level statistics of a paired difference.

    Args:
        diffs_by_unit: ``{seed: [method - baseline for each test case]}``.
        n_resamples: Resamples of the two-level bootstrap.
        confidence: Coverage of the intervals.
        seed: Seed of the resampling.
    """
    per = per_unit_means(diffs_by_unit)
    values = list(per.values())
    diff, boot_low, boot_high = hierarchical_paired_bootstrap_ci(
        diffs_by_unit, n_resamples=n_resamples, confidence=confidence, seed=seed
    )
    _, t_low, t_high = t_interval(values, confidence=confidence)
    pi_low, pi_high = prediction_interval(values, confidence=confidence)
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    use_t = len(values) < BOOTSTRAP_FROM_SEEDS
    return SeedLevel(
        diff=diff,
        low=t_low if use_t else boot_low,
        high=t_high if use_t else boot_high,
        method="t" if use_t else "bootstrap",
        t_low=t_low,
        t_high=t_high,
        boot_low=boot_low,
        boot_high=boot_high,
        pi_low=pi_low,
        pi_high=pi_high,
        sd=sd,
        detectable=detectable_effect(sd, len(values), alpha=1 - confidence),
        per_seed=tuple(values),
    )


def _pts(value: float) -> str:
    return f"{100 * value:+.1f}"


def verdict(
    per_unit: Sequence[float],
    low: float,
    high: float,
    *,
    unit: str = "seed",
    margin: float | None = None,
    resolution: float = RESOLUTION,
) -> str:
    """A verdict in words that follows from the seed-level numbers.

    A difference whose interval excludes 0 is a gain or a loss. One whose interval
    includes 0 is *not detected*, and the verdict says which gains and losses remain
    possible (the interval's ends, in Dice points); only when the whole interval lies
    within ``±margin`` does it say that no effect beyond the margin exists. An interval
    within ``±resolution`` is below what the report prints (0.05 points), whatever its
    sign.

    Args:
        per_unit: The mean paired difference of each seed (or other top-level unit).
        low: Lower bound of the seed-level interval.
        high: Upper bound of the seed-level interval.
        unit: What one value of ``per_unit`` is, for the text.
        margin: The equivalence margin (Dice, e.g. 0.01 for 1 point); ``None``: no
            verdict of "no effect" is given.
        resolution: Differences within this of 0 are below the report's resolution.

    Returns:
        E.g. ``"gain in every seed, interval above 0"``, ``"gain on average, interval
        above 0 (2 of 3 seeds gain)"``, the same two for a loss, ``"not detected: gains
        up to +1.8 and losses down to -2.2 points remain possible (4 of 8 seeds gain)"``,
        ``"no effect beyond ±1.0 points: the interval lies within it (4 of 8 seeds
        gain)"``, ``"below the report's resolution: |Δ| < 0.05 points"`` or ``"not
        established: 1 seed, no seed-level interval"``.
    """
    values = [v for v in per_unit if not math.isnan(v)]
    n = len(values)
    plural = f"{unit}s" if n != 1 else unit
    if n < 2 or math.isnan(low) or math.isnan(high):
        return f"not established: {n} {plural}, no {unit}-level interval"
    gains = sum(v > 0 for v in values)
    losses = sum(v < 0 for v in values)
    if max(abs(low), abs(high)) < resolution:
        return f"below the report's resolution: |Δ| < {100 * resolution:.2f} points"
    if low > 0:
        if gains == n:
            return f"gain in every {unit}, interval above 0"
        return f"gain on average, interval above 0 ({gains} of {n} {plural} gain)"
    if high < 0:
        if losses == n:
            return f"loss in every {unit}, interval below 0"
        return f"loss on average, interval below 0 ({losses} of {n} {plural} lose)"
    if margin is not None and -margin < low and high < margin:
        return (
            f"no effect beyond ±{100 * margin:.1f} points: the interval lies within it "
            f"({gains} of {n} {plural} gain)"
        )
    return (
        f"not detected: gains up to {_pts(high)} and losses down to {_pts(low)} points "
        f"remain possible ({gains} of {n} {plural} gain)"
    )
