"""Tables (CSV, Markdown), the Dice-against-training-size plot and the training curves of
an experiment."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from fdseg_core.atomic import atomic_save_figure, atomic_write_text
from fdseg_core.choices import DEFAULT_MARGIN
from fdseg_core.experiment.results import MEAN, RunScores, class_names, per_pair_scores
from fdseg_core.experiment.stats import (
    BOOTSTRAP_FROM_SEEDS,
    N_RESAMPLES,
    SeedLevel,
    few_seeds_note,
    mean_std,
    paired_bootstrap_ci,
    seed_level,
    seeds_needed,
    verdict,
)
from fdseg_core.train.logs import integer_epochs

__all__ = [
    "ALL_SIZES",
    "BASELINE",
    "ExperimentReport",
    "PairedDelta",
    "SeedsNeeded",
    "SummaryRow",
    "compact_table",
    "dice_vs_size_figure",
    "format_delta",
    "format_detectable",
    "format_interval",
    "format_per_seed",
    "seeds_table",
    "summarise",
    "write_report",
]


#: The ``train_size`` of the rows pooled over every training size.
ALL_SIZES = "all"
#: The method every other one is compared with, unless a caller names another: no band
#: split.
BASELINE = "none"


@dataclass(frozen=True)
class PairedDelta:
    """A method's paired difference to the baseline, in one row of :func:`summarise`.

    Attributes:
        seed_level: The seed-level statistics (:func:`~fdseg_core.experiment.stats.
            seed_level`): the mean over seeds of each seed's mean paired difference
            (``diff``), the headline interval (``low``, ``high``, named by ``method``),
            the t and two-level bootstrap intervals, the prediction interval of one more
            seed, the spread of the seed means, the smallest detectable effect and each
            seed's difference.
        pooled_low: The interval over (seed, case) pairs as if they were independent
            (narrower; it says how precisely these seeds were measured, not what another
            seed would give), lower bound.
        pooled_high: Its upper bound.
        verdict: :func:`~fdseg_core.experiment.stats.verdict` of the headline interval.
    """

    seed_level: SeedLevel
    pooled_low: float
    pooled_high: float
    verdict: str

    @property
    def diff(self) -> float:
        """The mean over seeds of each seed's mean paired difference (Dice)."""
        return self.seed_level.diff

    def interval(self, name: str = "ci") -> tuple[float, float]:
        """One of the row's intervals.

        Args:
            name: ``"ci"`` (the headline seed-level interval), ``"t"``, ``"boot"`` (the
                two-level bootstrap), ``"pi"`` (the prediction interval of one more
                seed) or ``"pooled_ci"`` (over (seed, case) pairs).

        Returns:
            ``(low, high)`` in Dice.

        Raises:
            ValueError: Another name.
        """
        s = self.seed_level
        intervals = {
            "ci": (s.low, s.high),
            "t": (s.t_low, s.t_high),
            "boot": (s.boot_low, s.boot_high),
            "pi": (s.pi_low, s.pi_high),
            "pooled_ci": (self.pooled_low, self.pooled_high),
        }
        if name not in intervals:
            raise ValueError(f"interval {name!r}: expected one of {', '.join(intervals)}")
        return intervals[name]


@dataclass(frozen=True)
class SummaryRow:
    """One row of :func:`summarise`: a method's test Dice at one training size (or
    pooled over the sizes) for one class, and its paired difference to the baseline.

    Attributes:
        train_size: Training cases, or :data:`ALL_SIZES` for the row pooled over sizes.
        class_name: A foreground class, or ``"mean"`` (each case's mean over classes).
        method: The method label.
        n: (seed, test case) pairs.
        dice_mean: Mean Dice over those pairs.
        dice_std: Their standard deviation.
        delta: The paired difference to the baseline; ``None`` for the baseline itself
            (or when there is none).
    """

    train_size: int | str
    class_name: str
    method: str
    n: int
    dice_mean: float
    dice_std: float
    delta: PairedDelta | None = None

    def to_dict(self) -> dict[str, Any]:
        """The flat row of ``table.csv`` and ``summary.json``: ``train_size``, ``class``,
        ``method``, ``n``, ``dice_mean``, ``dice_std`` and the difference's ``diff``,
        ``ci_low``/``ci_high`` (named by ``ci_method``), ``t_*``, ``boot_*``, ``pi_*``,
        ``sd_seeds``, ``detectable``, ``pooled_ci_*``, ``n_seeds``, ``per_seed`` and
        ``verdict`` (``None`` for the baseline)."""
        row: dict[str, Any] = {
            "train_size": self.train_size,
            "class": self.class_name,
            "method": self.method,
            "n": self.n,
            "dice_mean": self.dice_mean,
            "dice_std": self.dice_std,
        }
        d = self.delta
        s = d.seed_level if d is not None else None
        row |= {
            "diff": s and s.diff,
            "ci_low": s and s.low,
            "ci_high": s and s.high,
            "ci_method": s and s.method,
            "t_low": s and s.t_low,
            "t_high": s and s.t_high,
            "boot_low": s and s.boot_low,
            "boot_high": s and s.boot_high,
            "pi_low": s and s.pi_low,
            "pi_high": s and s.pi_high,
            "sd_seeds": s and s.sd,
            "detectable": s and s.detectable,
            "pooled_ci_low": d and d.pooled_low,
            "pooled_ci_high": d and d.pooled_high,
            "n_seeds": s and s.n_seeds,
            "per_seed": None if s is None else list(s.per_seed),
            "verdict": d and d.verdict,
        }
        return row


def summarise(
    results: Sequence[RunScores],
    *,
    methods: Sequence[str],
    n_resamples: int = N_RESAMPLES,
    baseline: str = BASELINE,
    margin: float = DEFAULT_MARGIN,
) -> list[SummaryRow]:
    """One row per (training size, class, method), and per (class, method) pooled over
    the sizes: Dice mean and std, and the paired difference to the baseline (method
    ``baseline``, ``"none"`` unless told: the network without band split) at seed level.

    Scores are paired by (seed, test case). A ``"mean"`` class averages the foreground
    classes of each case. A method's row carries a :class:`PairedDelta`: the mean over
    seeds of each seed's mean paired difference; the headline seed-level 95 % interval
    (the t interval on the seed means below
    :data:`~fdseg_core.experiment.stats.BOOTSTRAP_FROM_SEEDS` seeds, the two-level
    bootstrap from there on) and both of those intervals; the 95 % prediction interval
    of one more seed's difference (what a user who trains once may get); the spread of
    the seed means and the smallest true difference they detect with 80 % power; the
    pooled (seed, case) interval; each seed's difference; and the verdict, with the
    equivalence ``margin``.

    In the rows pooled over sizes (``train_size`` :data:`ALL_SIZES`), each seed's
    difference is its mean over the sizes (the unit stays the seed: the sizes of one
    seed share its initialisation, and with nested draws their training cases).

    Args:
        results: The runs (a :class:`~fdseg_core.experiment.results.RunResult` each, or
            any :class:`~fdseg_core.experiment.results.RunScores`).
        methods: The method labels, in row order.
        n_resamples: Bootstrap resamples.
        baseline: The method the others are compared with.
        margin: The equivalence margin of the verdicts (Dice).

    Returns:
        The rows, by size (then the pooled size), class (then ``"mean"``) and method.
    """
    names = [*class_names(results), MEAN]
    sizes = sorted({r.train_size for r in results})
    groups: list[tuple[Any, list[int]]] = [(size, [size]) for size in sizes]
    if len(sizes) > 1:
        groups.append((ALL_SIZES, sizes))
    table = []
    for label, group in groups:
        for name in names:
            base = _scores(results, group, baseline, name) if baseline in methods else {}
            for method in methods:
                scores = _scores(results, group, method, name)
                if not scores:
                    continue
                mean, std = mean_std(list(scores.values()))
                delta = None
                if base and method != baseline:
                    delta = _delta(scores, base, n_resamples, margin)
                table.append(SummaryRow(label, name, method, len(scores), mean, std, delta))
    return table


def _scores(results, sizes, method, name) -> dict[tuple, float]:
    """``{(size, seed, case): score}`` of one method over some training sizes."""
    return {
        (size, *pair): score
        for size in sizes
        for pair, score in per_pair_scores(results, size, method, name).items()
    }


def _delta(scores, base, n_resamples: int, margin: float) -> PairedDelta:
    pairs = sorted(set(scores) & set(base))
    by_seed_size: dict[tuple, list[float]] = {}
    for size, seed, case in pairs:
        by_seed_size.setdefault((seed, size), []).append(
            scores[(size, seed, case)] - base[(size, seed, case)]
        )
    # one unit per seed: with several sizes, a seed's cases of every size (each size's
    # mean weighs the same, as the per-seed mean over sizes is what the unit stands for)
    by_seed: dict[Any, list[float]] = {}
    for (seed, _), diffs in sorted(by_seed_size.items()):
        by_seed.setdefault(seed, []).append(diffs)
    units = {seed: _size_balanced(groups) for seed, groups in by_seed.items()}
    stats = seed_level(units, n_resamples=n_resamples)
    _, pooled_low, pooled_high = paired_bootstrap_ci(
        [scores[p] for p in pairs], [base[p] for p in pairs], n_resamples=n_resamples
    )
    return PairedDelta(
        seed_level=stats,
        pooled_low=pooled_low,
        pooled_high=pooled_high,
        verdict=verdict(list(stats.per_seed), stats.low, stats.high, margin=margin),
    )


def _size_balanced(groups: list[list[float]]) -> list[float]:
    """One seed's case differences over several sizes, each size weighted equally: a
    size's cases are repeated so that every size contributes the same count (the least
    common multiple), so that the unit's mean is the mean of the sizes' means."""
    groups = [[v for v in g if not math.isnan(v)] for g in groups]
    groups = [g for g in groups if g]
    if len(groups) <= 1:
        return groups[0] if groups else []
    lcm = math.lcm(*(len(g) for g in groups))
    return [v for g in groups for v in g * (lcm // len(g))]


def _points(value: float | None, sign: bool = True) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{100 * value:+.1f}" if sign else f"{100 * value:.1f}"


def format_delta(row: SummaryRow, *, interval: str = "ci") -> str:
    """A row's paired difference and an interval of it in Dice points,
    ``"+2.8 [+1.5, +4.3]"``, or ``"—"`` for the baseline.

    Args:
        row: A row of :func:`summarise`.
        interval: ``"ci"`` (the headline seed-level interval), ``"t"``, ``"boot"``
            (the two-level bootstrap), ``"pooled_ci"`` (over (seed, case) pairs) or
            ``"pi"`` (the prediction interval of one more seed).
    """
    if row.delta is None:
        return "—"
    low, high = row.delta.interval(interval)
    return f"{_points(row.delta.diff)} [{_points(low)}, {_points(high)}]"


def format_interval(row: SummaryRow, interval: str) -> str:
    """An interval of a row alone, ``"[-8.1, +6.7]"`` (``"—"`` for the baseline)."""
    if row.delta is None:
        return "—"
    low, high = row.delta.interval(interval)
    return f"[{_points(low)}, {_points(high)}]"


def format_per_seed(row: SummaryRow) -> str:
    """Each seed's mean paired difference in Dice points, ``"+1.5, −1.3, +4.6"``."""
    if row.delta is None or not row.delta.seed_level.per_seed:
        return "—"
    return ", ".join(_points(v) for v in row.delta.seed_level.per_seed)


def format_detectable(row: SummaryRow) -> str:
    """The smallest true gain the row's seeds detect with 80 % power, ``"±2.3"``."""
    value = None if row.delta is None else row.delta.seed_level.detectable
    if value is None or math.isnan(value):
        return "—"
    return f"±{100 * value:.1f}"


def compact_table(
    table: Sequence[SummaryRow], results: Sequence[RunScores], methods: Sequence[str]
) -> str:
    """The compact Markdown table of an experiment: one row per (training size, method),
    and per method pooled over the sizes.

    Each row gives the runs behind it, the mean Dice with its paired difference to the
    baseline (the headline seed-level interval, the verdict, the smallest effect the
    seeds detect with 80 % power, the prediction interval of one more seed, each seed's
    difference and the pooled (seed, case) interval), and each class's Dice with its
    difference and verdict.

    Args:
        table: The rows of :func:`summarise`.
        results: Every run behind ``table``.
        methods: The method labels, in row order.

    Returns:
        The table, ending with a newline.
    """
    classes = [c for c in dict.fromkeys(r.class_name for r in table) if c != MEAN]
    rows = {(r.train_size, r.method, r.class_name): r for r in table}
    names = [c.replace("_", " ") for c in classes]
    lines = [
        "| train cases | method | runs | mean Dice | Δ mean [seed-level 95% CI] | verdict | "
        "detectable (80% power) | next seed [95% PI] | Δ mean per seed | "
        "Δ mean [pooled 95% CI] | "
        + " | ".join(f"{n}: Dice, Δ [seed-level CI], verdict" for n in names)
        + " |",
        "|---:|---|---:|---:|---|---|---|---|---|---|" + "---|" * len(classes),
    ]
    sizes = list(dict.fromkeys(r.train_size for r in table))
    for size in sizes:
        for method in methods:
            mean = rows.get((size, method, MEAN))
            if mean is None:
                continue
            runs = sum(
                (size == ALL_SIZES or r.train_size == size) and r.method == method for r in results
            )
            cells = []
            for c in classes:
                row = rows.get((size, method, c))
                if row is None:
                    cells.append("—")
                elif row.delta is None:
                    cells.append(f"{100 * row.dice_mean:.1f}")
                else:
                    cells.append(
                        f"{100 * row.dice_mean:.1f}, {format_delta(row)}, {row.delta.verdict}"
                    )
            lines.append(
                f"| {size} | {method} | {runs} | {100 * mean.dice_mean:.1f} | "
                f"{format_delta(mean)} | {_verdict(mean)} | {format_detectable(mean)} | "
                f"{format_interval(mean, 'pi')} | {format_per_seed(mean)} | "
                f"{format_delta(mean, interval='pooled_ci')} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SeedsNeeded:
    """How many seeds one (training size, method) needs, from its seeds so far.

    Attributes:
        train_size: Training cases.
        method: The method label.
        n_seeds: Seeds so far.
        sd_seeds: The standard deviation of their mean paired differences (``nan`` with
            one seed).
        seeds_needed: Seeds that detect the target effect with the power asked;
            ``None`` when no reasonable number suffices or the spread is unknown.
    """

    train_size: int | str
    method: str
    n_seeds: int
    sd_seeds: float
    seeds_needed: int | None


def seeds_table(
    table: Sequence[SummaryRow], effect: float, *, power: float = 0.8
) -> list[SeedsNeeded]:
    """How many seeds each (training size, method) needs to detect a true mean gain of
    ``effect`` (Dice) with ``power``, from the spread of its seeds so far (a pilot).

    Args:
        table: The rows of :func:`summarise`.
        effect: The target effect, in Dice (0.02 for 2 points).
        power: The power.

    Returns:
        One per (size, method) row of the ``"mean"`` class with a paired difference.
    """
    out = []
    for row in table:
        if row.class_name != MEAN or row.delta is None or row.train_size == ALL_SIZES:
            continue
        stats = row.delta.seed_level
        needed = None if math.isnan(stats.sd) else seeds_needed(stats.sd, effect, power=power)
        out.append(SeedsNeeded(row.train_size, row.method, stats.n_seeds, stats.sd, needed))
    return out


def _verdict(row: SummaryRow) -> str:
    return "—" if row.delta is None else row.delta.verdict


def _markdown(
    table: Sequence[SummaryRow], n_seeds: int | None = None, baseline: str = BASELINE
) -> str:
    lines = [
        "| train size | class | method | Dice (mean ± std) | Δ vs baseline [seed-level 95% CI] "
        "| verdict | detectable (80% power) | next seed [95% PI] | Δ per seed "
        "| Δ [t on seed means] | Δ [two-level bootstrap] | Δ [pooled (seed, case) 95% CI] | n |",
        "|---:|---|---|---|---|---|---|---|---|---|---|---|---:|",
    ]
    for r in table:
        lines.append(
            f"| {r.train_size} | {r.class_name} | {r.method} | "
            f"{100 * r.dice_mean:.1f} ± {100 * r.dice_std:.1f} | {format_delta(r)} | "
            f"{_verdict(r)} | {format_detectable(r)} | {format_interval(r, 'pi')} | "
            f"{format_per_seed(r)} | {format_interval(r, 't')} | {format_interval(r, 'boot')} | "
            f"{format_interval(r, 'pooled_ci')} | {r.n} |"
        )
    lines.append("")
    lines.append(
        "Dice in points (×100); n: (seed, test case) pairs. Δ: the mean over seeds of each "
        f"seed's mean paired difference to the baseline (method {baseline}). Seed-level CI, "
        "the headline: what the mean gain over new seeds (new draws of training cases and "
        f"initialisations) may be; with fewer than {BOOTSTRAP_FROM_SEEDS} seeds it is the t "
        "interval on the seed means (a percentile bootstrap over few seeds is too narrow), "
        "from there on the two-level bootstrap that resamples seeds, then test cases within "
        "each seed; both are given. Detectable: the smallest true mean gain these seeds "
        "detect with 80 % power (two-sided 5 % t test, from the spread of the seed means): "
        "a smaller one may exist undetected. Next seed: the 95 % prediction interval of "
        "one more run's gain, what a user who trains once may get. Pooled CI: (seed, case) "
        "pairs resampled as if independent; narrower, it says how precisely these seeds "
        f"were measured. Rows of train size {ALL_SIZES!r} pool the sizes: each seed's Δ "
        "is its mean over the sizes."
    )
    note = few_seeds_note(n_seeds) if n_seeds is not None else None
    if note:
        lines += ["", f"Note: {note}."]
    return "\n".join(lines) + "\n"


def dice_vs_size_figure(
    table: Sequence[SummaryRow], methods: Sequence[str], *, baseline: str = BASELINE
) -> Figure:
    """Test Dice against the training size, one column per class, on a log-2 size axis.

    The top row shows each method's Dice (mean ± std over (seed, case) pairs). When the
    table has a baseline, a second row shows each method's paired difference to it with
    the seed-level 95 % interval as the error bar and each seed's own difference as a
    dot: the spread that decides whether a new seed gains. Rows pooled over the sizes
    are not drawn.

    Args:
        table: The rows of :func:`summarise`.
        methods: The method labels, in legend order.
        baseline: The method the differences are taken to (labelled "baseline" when it
            is ``"none"``).

    Returns:
        The figure, not yet saved. Its x axis reaches half an octave beyond the
        smallest and largest size, so that a single size still shows every method
        side by side, and its y axis a little above 1, so that a Dice of 1 is not
        clipped.
    """
    table = [r for r in table if r.train_size != ALL_SIZES]
    classes = list(dict.fromkeys(r.class_name for r in table))
    sizes = sorted({int(r.train_size) for r in table})
    deltas = any(r.delta is not None for r in table)
    # a Figure without pyplot: no GUI backend, no global figure registry
    fig = Figure(figsize=(4.2 * len(classes), 3.8 * (2 if deltas else 1)))
    axes = fig.subplots(2 if deltas else 1, len(classes), squeeze=False)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for col, cls in enumerate(classes):
        for i, method in enumerate(methods):
            rows = sorted(
                (r for r in table if r.class_name == cls and r.method == method),
                key=lambda r: r.train_size,
            )
            if not rows:
                continue
            label = "baseline" if method == baseline == BASELINE else method
            colour = colours[i % len(colours)]
            shift = 1 + 0.03 * (i - 1)
            axes[0, col].errorbar(
                [int(r.train_size) * shift for r in rows],
                [r.dice_mean for r in rows],
                yerr=[r.dice_std for r in rows],
                marker="o",
                capsize=3,
                color=colour,
                label=label,
            )
            rows = [r for r in rows if r.delta is not None]
            if deltas and rows:
                _delta_points(axes[1, col], rows, shift, colour, label)
        for row in range(axes.shape[0]):
            _size_axis(axes[row, col], sizes)
        ax = axes[0, col]
        ax.set_ylabel("test Dice")
        ax.set_ylim(0, 1.04)
        ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.set_title(cls.replace("_", " "))
        ax.legend(fontsize=8)
        if deltas:
            ax = axes[1, col]
            ax.axhline(0, color="black", lw=0.8)
            ax.set_ylabel("Δ Dice vs baseline (points)")
            ax.set_title(f"{cls.replace('_', ' ')}: Δ, seed-level 95% CI, dots = seeds", fontsize=9)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _size_axis(ax, sizes) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xlim(sizes[0] / 2**0.5, sizes[-1] * 2**0.5)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training cases")
    ax.grid(alpha=0.3)


def _delta_points(ax, rows: list[SummaryRow], shift: float, colour: str, label: str) -> None:
    """One method's Δ (points) with its seed-level interval, and a dot per seed."""
    stats = [r.delta.seed_level for r in rows if r.delta is not None]
    xs = [int(r.train_size) * shift for r in rows]
    mid = [100 * s.diff for s in stats]
    low = [100 * s.low if _finite(s.low) else m for s, m in zip(stats, mid, strict=True)]
    high = [100 * s.high if _finite(s.high) else m for s, m in zip(stats, mid, strict=True)]
    ax.errorbar(
        xs,
        mid,
        yerr=[
            [m - lo for m, lo in zip(mid, low, strict=True)],
            [hi - m for m, hi in zip(mid, high, strict=True)],
        ],
        marker="s",
        capsize=4,
        lw=1.6,
        color=colour,
        label=label,
    )
    for x, s in zip(xs, stats, strict=True):
        ax.plot([x * 1.01] * s.n_seeds, [100 * v for v in s.per_seed], ".", color=colour, alpha=0.6)


def _finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    return value


def _finite(value) -> bool:
    return value is not None and not math.isnan(value)


def _plot_training_curves(
    curves: dict[tuple, list[dict]], path: Path, methods, baseline: str = BASELINE
) -> None:
    """One row per training size: training loss and validation mean Dice against epochs,
    a thin line per seed and a thick one for the mean over seeds (up to the epoch where
    the first seed stopped), per method."""
    sizes = sorted({size for size, _, _ in curves})
    fig = Figure(figsize=(11, 3.6 * len(sizes)))
    axes = fig.subplots(len(sizes), 2, squeeze=False)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, size in zip(axes, sizes, strict=True):
        for i, method in enumerate(methods):
            runs = [rows for (s, m, _), rows in sorted(curves.items()) if s == size and m == method]
            if not runs:
                continue
            colour = colours[i % len(colours)]
            label = "baseline" if method == baseline == BASELINE else method
            for ax, key in zip(row, ("train_loss", "val_dice_mean"), strict=True):
                series = [
                    {r["epoch"]: r[key] for r in rows if r.get(key) is not None} for rows in runs
                ]
                for points in series:
                    ax.plot(list(points), list(points.values()), color=colour, lw=0.6, alpha=0.35)
                # the mean where every seed still runs (runs stop early at different epochs)
                epochs = sorted(set(series[0]).intersection(*series[1:]))
                mean = [sum(p[e] for p in series) / len(series) for e in epochs]
                seeds = f"{len(runs)} seed" + ("s" if len(runs) != 1 else "")
                # markers, so that a run of one epoch is a point and not an empty axis
                ax.plot(
                    epochs, mean, color=colour, lw=2, marker="o", ms=3, label=f"{label} ({seeds})"
                )
        row[0].set_ylabel(f"training loss, n={size}")
        row[1].set_ylabel(f"validation mean Dice, n={size}")
        row[1].set_ylim(0, 1)
        for ax in row:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            integer_epochs(ax)
            ax.ticklabel_format(axis="y", useOffset=False)
        row[1].legend(fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=100)


@dataclass(frozen=True)
class ExperimentReport:
    """What an experiment's report wrote and says.

    Attributes:
        results: The runs behind it.
        table: The rows of :func:`summarise`.
        markdown: ``table.md``'s text.
        plot: ``dice_vs_size.png``.
        curves: ``training_curves.png``, or ``None`` when no run left a metrics log.
        n_seeds: Seeds among the results (``None`` without results).
        note: The warning about few seeds, or ``None``.
        missing: Runs of the grid without a result yet.
        trained: Runs trained by the call that made the report.
    """

    results: tuple[RunScores, ...]
    table: tuple[SummaryRow, ...]
    markdown: str
    plot: Path
    curves: Path | None = None
    n_seeds: int | None = None
    note: str | None = None
    missing: tuple[str, ...] = ()
    trained: int = 0


def write_report(
    results: Sequence[RunScores],
    out: str | Path,
    *,
    methods: Sequence[str],
    n_resamples: int = N_RESAMPLES,
    curves: Mapping[tuple, list[dict]] | None = None,
    baseline: str = BASELINE,
    margin: float = DEFAULT_MARGIN,
    missing: Sequence[str] = (),
) -> ExperimentReport:
    """Write ``table.csv``, ``table.md``, ``summary.json`` and ``dice_vs_size.png`` into
    ``out``, and ``training_curves.png`` when ``curves`` are given.

    Args:
        results: The runs.
        out: The experiment's folder.
        methods: The method labels, in table order.
        n_resamples: Bootstrap resamples of the paired confidence intervals.
        curves: ``{(train_size, method, seed): metrics rows}`` of each run's
            ``metrics.jsonl`` (training loss and validation Dice per epoch).
        baseline: The method the others are compared with (``"none"``: no band split;
            an ablation of recipes names its reference recipe).
        margin: The equivalence margin of the verdicts (Dice).
        missing: The runs of the grid without a result yet, named in a note atop
            ``table.md``.

    Returns:
        What was written and what it says (``trained`` 0: the caller counts its runs).
    """
    out = Path(out)
    table = summarise(
        results, methods=methods, n_resamples=n_resamples, baseline=baseline, margin=margin
    )
    rows = [row.to_dict() for row in table]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["train_size"])
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "per_seed": ";".join(f"{v:.6f}" for v in row["per_seed"] or [])})
    atomic_write_text(out / "table.csv", buf.getvalue())
    n_seeds = len({r.seed for r in results}) if results else None
    markdown = _markdown(table, n_seeds, baseline)
    if missing:
        n_runs = len(results) + len(missing)
        note = f"{len(missing)} of {n_runs} runs have no result yet: {', '.join(missing)}"
        markdown = f"Note: {note}.\n\n" + markdown
    atomic_write_text(out / "table.md", markdown)
    atomic_write_text(
        out / "summary.json",
        json.dumps(
            _finite_or_null(
                {"rows": rows, "n_seeds": n_seeds, "note": few_seeds_note(n_seeds or 0)}
            ),
            indent=1,
            allow_nan=False,
        )
        + "\n",
    )
    plot = out / "dice_vs_size.png"
    if table:
        atomic_save_figure(dice_vs_size_figure(table, methods, baseline=baseline), plot, dpi=110)
    curves_png = None
    if curves:
        curves_png = out / "training_curves.png"
        _plot_training_curves(dict(curves), curves_png, methods, baseline)
    return ExperimentReport(
        results=tuple(results),
        table=tuple(table),
        markdown=markdown,
        plot=plot,
        curves=curves_png,
        n_seeds=n_seeds,
        note=few_seeds_note(n_seeds) if n_seeds else None,
        missing=tuple(missing),
    )
