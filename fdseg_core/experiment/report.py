"""Tables (CSV, Markdown), the Dice-against-training-size plot and the training curves of
an experiment."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from fdseg_core.atomic import atomic_save_figure, atomic_write_text
from fdseg_core.choices import DEFAULT_MARGIN
from fdseg_core.experiment.results import class_keys, per_pair_scores
from fdseg_core.experiment.stats import (
    BOOTSTRAP_FROM_SEEDS,
    N_RESAMPLES,
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


def summarise(
    results: list[dict],
    *,
    methods,
    n_resamples: int = N_RESAMPLES,
    baseline: str = BASELINE,
    margin: float = DEFAULT_MARGIN,
) -> list[dict[str, Any]]:
    """One row per (training size, class, method), and per (class, method) pooled over
    the sizes: Dice mean and std, and the paired difference to the baseline (method
    ``baseline``, ``"none"`` unless told: the network without band split) at seed level.

    Scores are paired by (seed, test case). A ``"mean"`` class averages the foreground
    classes of each case. A method's row carries (:func:`~fdseg_core.experiment.stats.
    seed_level`):

    * ``diff``: the mean over seeds of each seed's mean paired difference;
    * ``ci_low``/``ci_high``: the headline seed-level 95 % interval, named by
      ``ci_method``: the t interval on the seed means below
      :data:`~fdseg_core.experiment.stats.BOOTSTRAP_FROM_SEEDS` seeds (``"t"``), the
      two-level bootstrap from there on (``"bootstrap"``);
    * ``t_low``/``t_high`` and ``boot_low``/``boot_high``: both seed-level intervals;
    * ``pi_low``/``pi_high``: the 95 % prediction interval of one more seed's
      difference: what a user who trains once may get;
    * ``sd_seeds``: the standard deviation of the seed means; ``detectable``: the
      smallest true mean difference these seeds detect with 80 % power;
    * ``pooled_ci_low``/``pooled_ci_high``: the interval over (seed, case) pairs as if
      they were independent (narrower; it says how precisely these seeds were
      measured, not what another seed would give);
    * ``per_seed``: each seed's mean difference, in seed order; ``n_seeds``;
    * ``verdict``: :func:`~fdseg_core.experiment.stats.verdict` of the headline
      interval, with the equivalence ``margin``.

    In the rows pooled over sizes (``train_size`` :data:`ALL_SIZES`), each seed's
    difference is its mean over the sizes (the unit stays the seed: the sizes of one
    seed share its initialisation, and with nested draws their training cases).
    """
    keys = [k for k in class_keys(results) if k != "dice_mean"]
    # a per-case mean over classes, on copies: the caller's results stay as they were, so
    # that a second summary of the same results has the same rows
    results = [{**r, "cases": [_with_mean(row, keys) for row in r["cases"]]} for r in results]
    keys = [*keys, "dice_mean"]
    sizes = sorted({r["train_size"] for r in results})
    groups: list[tuple[Any, list[int]]] = [(size, [size]) for size in sizes]
    if len(sizes) > 1:
        groups.append((ALL_SIZES, sizes))
    table = []
    for label, group in groups:
        for key in keys:
            base = _scores(results, group, baseline, key) if baseline in methods else {}
            for method in methods:
                scores = _scores(results, group, method, key)
                if not scores:
                    continue
                mean, std = mean_std(list(scores.values()))
                row = {
                    "train_size": label,
                    "class": key.removeprefix("dice_"),
                    "method": method,
                    "n": len(scores),
                    "dice_mean": mean,
                    "dice_std": std,
                    **_EMPTY_DELTA,
                }
                if base and method != baseline:
                    row.update(_delta(scores, base, n_resamples, margin))
                table.append(row)
    return table


def _with_mean(row: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """A copy of one case's row with ``dice_mean``, the mean of its classes' Dice."""
    vals = [row[k] for k in keys if row.get(k) is not None]
    return {**row, "dice_mean": sum(vals) / len(vals) if vals else None}


_EMPTY_DELTA: dict[str, Any] = {
    key: None
    for key in (
        "diff",
        "ci_low",
        "ci_high",
        "ci_method",
        "t_low",
        "t_high",
        "boot_low",
        "boot_high",
        "pi_low",
        "pi_high",
        "sd_seeds",
        "detectable",
        "pooled_ci_low",
        "pooled_ci_high",
        "n_seeds",
        "per_seed",
        "verdict",
    )
}


def _scores(results, sizes, method, key) -> dict[tuple, float]:
    """``{(size, seed, case): score}`` of one method over some training sizes."""
    return {
        (size, *pair): score
        for size in sizes
        for pair, score in per_pair_scores(results, size, method, key).items()
    }


def _delta(scores, base, n_resamples: int, margin: float) -> dict[str, Any]:
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
    return {
        "diff": stats.diff,
        "ci_low": stats.low,
        "ci_high": stats.high,
        "ci_method": stats.method,
        "t_low": stats.t_low,
        "t_high": stats.t_high,
        "boot_low": stats.boot_low,
        "boot_high": stats.boot_high,
        "pi_low": stats.pi_low,
        "pi_high": stats.pi_high,
        "sd_seeds": stats.sd,
        "detectable": stats.detectable,
        "pooled_ci_low": pooled_low,
        "pooled_ci_high": pooled_high,
        "n_seeds": stats.n_seeds,
        "per_seed": list(stats.per_seed),
        "verdict": verdict(list(stats.per_seed), stats.low, stats.high, margin=margin),
    }


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


def format_delta(row: dict[str, Any], *, interval: str = "ci") -> str:
    """A ``summarise`` row's paired difference and an interval of it in Dice points,
    ``"+2.8 [+1.5, +4.3]"``, or ``"—"`` for the baseline.

    Args:
        row: A row of :func:`summarise`.
        interval: ``"ci"`` (the headline seed-level interval), ``"t"``, ``"boot"``
            (the two-level bootstrap), ``"pooled_ci"`` (over (seed, case) pairs) or
            ``"pi"`` (the prediction interval of one more seed).
    """
    if row["diff"] is None:
        return "—"
    low, high = row.get(f"{interval}_low"), row.get(f"{interval}_high")
    return f"{_points(row['diff'])} [{_points(low)}, {_points(high)}]"


def format_interval(row: dict[str, Any], interval: str) -> str:
    """An interval of a row alone, ``"[-8.1, +6.7]"`` (``"—"`` for the baseline)."""
    if row["diff"] is None:
        return "—"
    return f"[{_points(row.get(f'{interval}_low'))}, {_points(row.get(f'{interval}_high'))}]"


def format_per_seed(row: dict[str, Any]) -> str:
    """Each seed's mean paired difference in Dice points, ``"+1.5, −1.3, +4.6"``."""
    if not row.get("per_seed"):
        return "—"
    return ", ".join(_points(v) for v in row["per_seed"])


def format_detectable(row: dict[str, Any]) -> str:
    """The smallest true gain the row's seeds detect with 80 % power, ``"±2.3"``."""
    value = row.get("detectable")
    if row["diff"] is None or value is None or math.isnan(value):
        return "—"
    return f"±{100 * value:.1f}"


def compact_table(table: list[dict], results: list[dict], methods) -> str:
    """The compact Markdown table of an experiment: one row per (training size, method),
    and per method pooled over the sizes.

    Each row gives the runs behind it, the mean Dice with its paired difference to the
    baseline (the headline seed-level interval, the verdict, the smallest effect the
    seeds detect with 80 % power, the prediction interval of one more seed, each seed's
    difference and the pooled (seed, case) interval), and each class's Dice with its
    difference and verdict.

    Args:
        table: The rows of :func:`summarise`.
        results: The ``result.json`` of every run behind ``table`` (each with
            ``train_size`` and ``method``).
        methods: The method labels, in row order.

    Returns:
        The table, ending with a newline.
    """
    classes = [c for c in dict.fromkeys(r["class"] for r in table) if c != "mean"]
    rows = {(r["train_size"], r["method"], r["class"]): r for r in table}
    names = [c.replace("_", " ") for c in classes]
    lines = [
        "| train cases | method | runs | mean Dice | Δ mean [seed-level 95% CI] | verdict | "
        "detectable (80% power) | next seed [95% PI] | Δ mean per seed | "
        "Δ mean [pooled 95% CI] | "
        + " | ".join(f"{n}: Dice, Δ [seed-level CI], verdict" for n in names)
        + " |",
        "|---:|---|---:|---:|---|---|---|---|---|---|" + "---|" * len(classes),
    ]
    sizes = list(dict.fromkeys(r["train_size"] for r in table))
    for size in sizes:
        for method in methods:
            mean = rows.get((size, method, "mean"))
            if mean is None:
                continue
            runs = sum(
                (size == ALL_SIZES or r["train_size"] == size) and r["method"] == method
                for r in results
            )
            cells = []
            for c in classes:
                row = rows.get((size, method, c))
                if row is None:
                    cells.append("—")
                elif row["diff"] is None:
                    cells.append(f"{100 * row['dice_mean']:.1f}")
                else:
                    cells.append(
                        f"{100 * row['dice_mean']:.1f}, {format_delta(row)}, {row['verdict']}"
                    )
            lines.append(
                f"| {size} | {method} | {runs} | {100 * mean['dice_mean']:.1f} | "
                f"{format_delta(mean)} | {mean['verdict'] or '—'} | {format_detectable(mean)} | "
                f"{format_interval(mean, 'pi')} | {format_per_seed(mean)} | "
                f"{format_delta(mean, interval='pooled_ci')} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def seeds_table(table: list[dict], effect: float, *, power: float = 0.8) -> list[dict[str, Any]]:
    """How many seeds each (training size, method) needs to detect a true mean gain of
    ``effect`` (Dice) with ``power``, from the spread of its seeds so far (a pilot).

    Args:
        table: The rows of :func:`summarise`.
        effect: The target effect, in Dice (0.02 for 2 points).
        power: The power.

    Returns:
        One dict per (size, method) row of the ``"mean"`` class with a paired difference:
        ``train_size``, ``method``, ``n_seeds``, ``sd_seeds``, ``seeds_needed`` (``None``
        when no reasonable number suffices or the spread is unknown).
    """
    out = []
    for row in table:
        if row["class"] != "mean" or row["diff"] is None or row["train_size"] == ALL_SIZES:
            continue
        sd = row.get("sd_seeds")
        needed = None
        if sd is not None and not math.isnan(sd):
            needed = seeds_needed(sd, effect, power=power)
        out.append(
            {
                "train_size": row["train_size"],
                "method": row["method"],
                "n_seeds": row["n_seeds"],
                "sd_seeds": sd,
                "seeds_needed": needed,
            }
        )
    return out


def _markdown(table: list[dict], n_seeds: int | None = None, baseline: str = BASELINE) -> str:
    lines = [
        "| train size | class | method | Dice (mean ± std) | Δ vs baseline [seed-level 95% CI] "
        "| verdict | detectable (80% power) | next seed [95% PI] | Δ per seed "
        "| Δ [t on seed means] | Δ [two-level bootstrap] | Δ [pooled (seed, case) 95% CI] | n |",
        "|---:|---|---|---|---|---|---|---|---|---|---|---|---:|",
    ]
    for r in table:
        lines.append(
            f"| {r['train_size']} | {r['class']} | {r['method']} | "
            f"{100 * r['dice_mean']:.1f} ± {100 * r['dice_std']:.1f} | {format_delta(r)} | "
            f"{r['verdict'] or '—'} | {format_detectable(r)} | {format_interval(r, 'pi')} | "
            f"{format_per_seed(r)} | {format_interval(r, 't')} | {format_interval(r, 'boot')} | "
            f"{format_interval(r, 'pooled_ci')} | {r['n']} |"
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


def dice_vs_size_figure(table: list[dict], methods, *, baseline: str = BASELINE) -> Figure:
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
    table = [r for r in table if r["train_size"] != ALL_SIZES]
    classes = list(dict.fromkeys(r["class"] for r in table))
    sizes = sorted({r["train_size"] for r in table})
    deltas = any(r.get("diff") is not None for r in table)
    # a Figure without pyplot: no GUI backend, no global figure registry
    fig = Figure(figsize=(4.2 * len(classes), 3.8 * (2 if deltas else 1)))
    axes = fig.subplots(2 if deltas else 1, len(classes), squeeze=False)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for col, cls in enumerate(classes):
        for i, method in enumerate(methods):
            rows = sorted(
                (r for r in table if r["class"] == cls and r["method"] == method),
                key=lambda r: r["train_size"],
            )
            if not rows:
                continue
            label = "baseline" if method == baseline == BASELINE else method
            colour = colours[i % len(colours)]
            shift = 1 + 0.03 * (i - 1)
            axes[0, col].errorbar(
                [r["train_size"] * shift for r in rows],
                [r["dice_mean"] for r in rows],
                yerr=[r["dice_std"] for r in rows],
                marker="o",
                capsize=3,
                color=colour,
                label=label,
            )
            rows = [r for r in rows if r.get("diff") is not None]
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


def _delta_points(ax, rows, shift: float, colour: str, label: str) -> None:
    """One method's Δ (points) with its seed-level interval, and a dot per seed."""
    xs = [r["train_size"] * shift for r in rows]
    mid = [100 * r["diff"] for r in rows]
    low = [100 * r["ci_low"] if _finite(r["ci_low"]) else m for r, m in zip(rows, mid, strict=True)]
    high = [
        100 * r["ci_high"] if _finite(r["ci_high"]) else m for r, m in zip(rows, mid, strict=True)
    ]
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
    for x, r in zip(xs, rows, strict=True):
        seeds = r.get("per_seed") or []
        ax.plot([x * 1.01] * len(seeds), [100 * v for v in seeds], ".", color=colour, alpha=0.6)


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


def write_report(
    results: list[dict],
    out: str | Path,
    *,
    methods,
    n_resamples: int = N_RESAMPLES,
    curves: dict[tuple, list[dict]] | None = None,
    baseline: str = BASELINE,
    margin: float = DEFAULT_MARGIN,
) -> dict[str, Any]:
    """Write ``table.csv``, ``table.md``, ``summary.json`` and ``dice_vs_size.png`` into
    ``out``, and ``training_curves.png`` when ``curves`` are given.

    Args:
        results: One ``result.json`` per run.
        out: The experiment's folder.
        methods: The method labels, in table order.
        n_resamples: Bootstrap resamples of the paired confidence intervals.
        curves: ``{(train_size, method, seed): metrics rows}`` of each run's
            ``metrics.jsonl`` (training loss and validation Dice per epoch).
        baseline: The method the others are compared with (``"none"``: no band split;
            an ablation of recipes names its reference recipe).
        margin: The equivalence margin of the verdicts (Dice).
    """
    out = Path(out)
    table = summarise(
        results, methods=methods, n_resamples=n_resamples, baseline=baseline, margin=margin
    )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]) if table else ["train_size"])
    writer.writeheader()
    for row in table:
        writer.writerow({**row, "per_seed": ";".join(f"{v:.6f}" for v in row["per_seed"] or [])})
    atomic_write_text(out / "table.csv", buf.getvalue())
    n_seeds = len({r["seed"] for r in results}) if results else None
    markdown = _markdown(table, n_seeds, baseline)
    atomic_write_text(out / "table.md", markdown)
    atomic_write_text(
        out / "summary.json",
        json.dumps(
            _finite_or_null(
                {"rows": table, "n_seeds": n_seeds, "note": few_seeds_note(n_seeds or 0)}
            ),
            indent=1,
            allow_nan=False,
        )
        + "\n",
    )
    plot = out / "dice_vs_size.png"
    if table:
        atomic_save_figure(dice_vs_size_figure(table, methods, baseline=baseline), plot, dpi=110)
    report: dict[str, Any] = {
        "table": table,
        "markdown": markdown,
        "plot": str(plot),
        "n_seeds": n_seeds,
        "note": few_seeds_note(n_seeds) if n_seeds else None,
    }
    if curves:
        report["curves"] = str(out / "training_curves.png")
        _plot_training_curves(curves, out / "training_curves.png", methods, baseline)
    return report
