"""Tables (CSV, Markdown), the Dice-against-training-size plot and the training curves of
an experiment."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from fdseg_core.atomic import atomic_save_figure, atomic_write_text
from fdseg_core.experiment.results import class_keys, per_pair_scores
from fdseg_core.experiment.stats import mean_std, paired_bootstrap_ci

__all__ = ["dice_vs_size_figure", "format_delta", "summarise", "write_report"]


def summarise(results: list[dict], *, methods, n_resamples: int = 10000) -> list[dict[str, Any]]:
    """One row per (training size, class, method): Dice mean, std, and the paired
    difference to the baseline (method ``"none"``) with its bootstrap 95% interval.

    Scores are paired by (seed, test case). A "mean" class averages the
    foreground classes of each case.
    """
    keys = class_keys(results)
    # add a per-case mean over classes
    for r in results:
        for row in r["cases"]:
            vals = [row[k] for k in keys if row.get(k) is not None]
            row["dice_mean"] = sum(vals) / len(vals) if vals else None
    keys = [*keys, "dice_mean"]
    sizes = sorted({r["train_size"] for r in results})
    table = []
    for size in sizes:
        for key in keys:
            base = per_pair_scores(results, size, "none", key) if "none" in methods else {}
            for method in methods:
                scores = per_pair_scores(results, size, method, key)
                if not scores:
                    continue
                mean, std = mean_std(list(scores.values()))
                row = {
                    "train_size": size,
                    "class": key.removeprefix("dice_"),
                    "method": method,
                    "n": len(scores),
                    "dice_mean": mean,
                    "dice_std": std,
                    "diff": None,
                    "ci_low": None,
                    "ci_high": None,
                }
                if base and method != "none":
                    pairs = sorted(set(scores) & set(base))
                    diff, low, high = paired_bootstrap_ci(
                        [scores[p] for p in pairs],
                        [base[p] for p in pairs],
                        n_resamples=n_resamples,
                    )
                    row.update(diff=diff, ci_low=low, ci_high=high)
                table.append(row)
    return table


def format_delta(row: dict[str, Any]) -> str:
    """A ``summarise`` row's paired difference and interval in Dice points,
    ``"+2.8 [+1.5, +4.3]"``, or ``"—"`` for the baseline."""
    if row["diff"] is None:
        return "—"
    return f"{100 * row['diff']:+.1f} [{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}]"


def _markdown(table: list[dict]) -> str:
    lines = [
        "| train size | class | method | Dice (mean ± std) | Δ vs baseline [95% CI] | n |",
        "|---:|---|---|---|---|---:|",
    ]
    for r in table:
        delta = format_delta(r)
        lines.append(
            f"| {r['train_size']} | {r['class']} | {r['method']} | "
            f"{100 * r['dice_mean']:.1f} ± {100 * r['dice_std']:.1f} | {delta} | "
            f"{r['n']} |"
        )
    lines.append("")
    lines.append(
        "Dice in points (×100). Δ: mean paired difference to the baseline (method none) "
        "over (seed, test case) pairs, with a percentile bootstrap 95% interval."
    )
    return "\n".join(lines) + "\n"


def dice_vs_size_figure(table: list[dict], methods) -> Figure:
    """Test Dice (mean ± std over (seed, case) pairs) against the training size, one
    panel per class, a line per method, on a log-2 size axis.

    Args:
        table: The rows of :func:`summarise`.
        methods: The method labels, in legend order.

    Returns:
        The figure, not yet saved. Its x axis reaches half an octave beyond the
        smallest and largest size, so that a single size still shows every method
        side by side, and its y axis a little above 1, so that a Dice of 1 is not
        clipped.
    """
    classes = list(dict.fromkeys(r["class"] for r in table))
    sizes = sorted({r["train_size"] for r in table})
    # a Figure without pyplot: no GUI backend, no global figure registry
    fig = Figure(figsize=(4.2 * len(classes), 3.8))
    axes = fig.subplots(1, len(classes), squeeze=False)
    for ax, cls in zip(axes[0], classes, strict=True):
        for i, method in enumerate(methods):
            rows = sorted(
                (r for r in table if r["class"] == cls and r["method"] == method),
                key=lambda r: r["train_size"],
            )
            if not rows:
                continue
            xs = [r["train_size"] * (1 + 0.03 * (i - 1)) for r in rows]
            ax.errorbar(
                xs,
                [r["dice_mean"] for r in rows],
                yerr=[r["dice_std"] for r in rows],
                marker="o",
                capsize=3,
                label="baseline" if method == "none" else method,
            )
        ax.set_xscale("log", base=2)
        ax.set_xlim(sizes[0] / 2**0.5, sizes[-1] * 2**0.5)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel("training cases")
        ax.set_ylabel("test Dice")
        ax.set_ylim(0, 1.04)
        ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.set_title(cls.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot_training_curves(curves: dict[tuple, list[dict]], path: Path, methods) -> None:
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
            label = "baseline" if method == "none" else method
            for ax, key in zip(row, ("train_loss", "val_dice_mean"), strict=True):
                series = [
                    {r["epoch"]: r[key] for r in rows if r.get(key) is not None} for rows in runs
                ]
                for points in series:
                    ax.plot(list(points), list(points.values()), color=colour, lw=0.6, alpha=0.35)
                # the mean where every seed still runs (runs stop early at different epochs)
                epochs = sorted(set(series[0]).intersection(*series[1:]))
                mean = [sum(p[e] for p in series) / len(series) for e in epochs]
                ax.plot(epochs, mean, color=colour, lw=2, label=f"{label} ({len(runs)} seeds)")
        row[0].set_ylabel(f"training loss, n={size}")
        row[1].set_ylabel(f"validation mean Dice, n={size}")
        row[1].set_ylim(0, 1)
        for ax in row:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        row[1].legend(fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=100)


def write_report(
    results: list[dict],
    out: str | Path,
    *,
    methods,
    n_resamples: int = 10000,
    curves: dict[tuple, list[dict]] | None = None,
) -> dict[str, Any]:
    """Write ``table.csv``, ``table.md`` and ``dice_vs_size.png`` into ``out``, and
    ``training_curves.png`` when ``curves`` are given.

    Args:
        results: One ``result.json`` per run.
        out: The experiment's folder.
        methods: The method labels, in table order.
        n_resamples: Bootstrap resamples of the paired confidence intervals.
        curves: ``{(train_size, method, seed): metrics rows}`` of each run's
            ``metrics.jsonl`` (training loss and validation Dice per epoch).
    """
    out = Path(out)
    table = summarise(results, methods=methods, n_resamples=n_resamples)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]) if table else ["train_size"])
    writer.writeheader()
    writer.writerows(table)
    atomic_write_text(out / "table.csv", buf.getvalue())
    markdown = _markdown(table)
    atomic_write_text(out / "table.md", markdown)
    plot = out / "dice_vs_size.png"
    if table:
        atomic_save_figure(dice_vs_size_figure(table, methods), plot, dpi=110)
    report: dict[str, Any] = {"table": table, "markdown": markdown, "plot": str(plot)}
    if curves:
        report["curves"] = str(out / "training_curves.png")
        _plot_training_curves(curves, out / "training_curves.png", methods)
    return report
